"""The web console in a real browser: Playwright drives Debian's Chromium (installed when missing)
against API, worker and scheduler processes. Screenshots go to `test-artifacts/console/`."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from app.auth.models import User
from app.core.db import create_sessionmaker, transaction
from app.projects.models import Role
from tests.debian import debian_tool
from tests.factories import DEFAULT_PASSWORD, add_member, make_user
from tests.integration.webhooks.receiver import running_receiver
from tests.integration.webhooks.support import remove_endpoints
from tests.platform import Platform
from tests.support import REPO_ROOT

pytestmark = pytest.mark.e2e

ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
AXE_VERSION = "4.14.1"
# What the timeouts of `expect` wait for: a task to run on a worker of a shared machine.
FINISH_MS = 60_000


@pytest.fixture(scope="session")
def chromium() -> str:
    return debian_tool("chromium", "chromium")


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's browser build, installed by npm into a cache outside the repository."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taskgate-tests"
    script = cache / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = debian_tool("npm", "npm")
        installed = subprocess.run(  # noqa: S603 - fixed argv
            [
                npm,
                "install",
                "--prefix",
                str(cache),
                "--no-audit",
                "--no-fund",
                f"axe-core@{AXE_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr[-2000:]
    return script.read_text()


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as tests here may.
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


class People:
    def __init__(self, owner: str, viewer: str) -> None:
        self.owner = owner
        self.viewer = viewer


@pytest.fixture
async def people(platform: Platform) -> AsyncIterator[People]:
    """The platform project's owner, and a viewer added to it; both sign in with a password."""
    assert platform.project is not None
    async with transaction(create_sessionmaker(platform.engine)) as session:
        owner = await session.get_one(User, platform.project.owner_id)
        viewer = await make_user(session)
        await add_member(session, platform.project, viewer, Role.viewer)
        found = People(owner.email, viewer.email)
    yield found
    await remove_endpoints(platform)


class Tab:
    """A page of the console, with every console error and refused resource it saw."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def sign_in(self, email: str, password: str = DEFAULT_PASSWORD) -> None:
        await self.page.goto(f"{self.base_url}/console")
        await self.page.get_by_label("Email", exact=True).fill(email)
        await self.page.get_by_label("Password", exact=True).fill(password)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("heading", name="Projects")).to_be_visible()

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)

    async def accessibility_violations(self, axe: str) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is now. Run through the
        DevTools protocol, which the page's script-src 'self' does not apply to."""
        found: list[dict[str, Any]] = await self.page.evaluate(
            "async (source) => { (0, eval)(source);"
            " const result = await axe.run(document, {resultTypes: ['violations']});"
            " return result.violations.map(v => ({id: v.id, impact: v.impact,"
            " nodes: v.nodes.map(n => n.target.join(' '))})); }",
            axe,
        )
        return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.fixture
async def tab(browser: Browser, platform: Platform) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    yield Tab(page, platform.base_url)
    await context.close()


async def _open_project(tab: Tab, platform: Platform, screen: str) -> None:
    await tab.page.goto(f"{platform.base_url}/console/#/p/{platform.project_id}/{screen}")


class TestSignIn:
    async def test_the_owner_sees_their_project_with_their_role(
        self, tab: Tab, platform: Platform, people: People, axe_source: str
    ) -> None:
        await tab.page.goto(f"{platform.base_url}/console")
        assert await tab.accessibility_violations(axe_source) == []
        await tab.screenshot("sign-in")

        await tab.sign_in(people.owner)

        assert platform.project is not None
        row = tab.page.get_by_role("row", name=re.compile(re.escape(platform.project.name)))
        await expect(row).to_contain_text("owner")
        assert await tab.accessibility_violations(axe_source) == []
        await tab.screenshot("projects")
        assert tab.errors == []

    async def test_a_wrong_password_shows_the_problem_and_its_request_id(
        self, tab: Tab, platform: Platform, people: People
    ) -> None:
        await tab.page.goto(f"{platform.base_url}/console")
        await tab.page.get_by_label("Email", exact=True).fill(people.owner)
        await tab.page.get_by_label("Password", exact=True).fill("not the password at all")

        await tab.page.get_by_role("button", name="Sign in").click()

        problem = tab.page.get_by_role("alert")
        await expect(problem).to_contain_text("401")
        await expect(problem).to_contain_text(re.compile(r"Request id: [0-9a-f]{32}"))

    async def test_an_api_key_signs_in_to_its_project(self, tab: Tab, platform: Platform) -> None:
        await tab.page.goto(f"{platform.base_url}/console")
        await tab.page.get_by_label("API key", exact=True).fill(platform.api_key)

        await tab.page.get_by_role("button", name="Use this key").click()

        assert platform.project is not None
        await expect(tab.page.get_by_role("link", name=platform.project.name)).to_be_visible()
        assert tab.errors == []


class TestSession:
    async def test_the_access_token_is_refreshed_before_it_expires(
        self, browser: Browser, platform: Platform, people: People
    ) -> None:
        # An API whose access tokens live the shortest time allowed; the console refreshes 30 s
        # before expiry.
        platform.env["TASKGATE_SECURITY__ACCESS_TOKEN_TTL_S"] = "60"
        platform.start_api()
        context = await browser.new_context()
        tab = Tab(await context.new_page(), platform.base_url)
        calls: list[str] = []
        tab.page.on("request", lambda request: calls.append(request.url))
        await tab.sign_in(people.owner)
        await tab.page.wait_for_timeout(31_000)

        await _open_project(tab, platform, "tasks")

        await expect(tab.page.get_by_role("heading", name="Tasks")).to_be_visible()
        await expect(tab.page.get_by_text("No tasks match.")).to_be_visible()
        assert [url for url in calls if url.endswith("/v1/auth/refresh")] != []
        storage = await tab.page.evaluate(
            "() => [localStorage.length, sessionStorage.length, document.cookie]"
        )
        assert storage == [0, 0, ""]
        assert tab.errors == []
        await context.close()


class TestTasks:
    async def test_cpu_primes_from_the_generated_form_runs_to_its_result(
        self, tab: Tab, platform: Platform, people: People, axe_source: str
    ) -> None:
        platform.start_worker(concurrency=2)
        await tab.sign_in(people.owner)
        await _open_project(tab, platform, "submit")
        await tab.page.get_by_label("Type", exact=True).select_option("cpu.primes")

        await tab.page.get_by_label("n", exact=True).fill("1000000")
        await tab.page.get_by_role("button", name="Submit", exact=True).click()

        status = tab.page.get_by_test_id("task-status")
        await expect(status).to_have_text("succeeded", timeout=FINISH_MS)
        await expect(tab.page.locator("pre.json").last).to_contain_text("78498")
        await expect(tab.page.locator(".timeline")).to_contain_text("task.succeeded")
        assert await tab.accessibility_violations(axe_source) == []
        await tab.screenshot("task")
        await _open_project(tab, platform, "tasks")
        await expect(tab.page.get_by_role("row", name=re.compile("cpu.primes"))).to_contain_text(
            "succeeded"
        )
        assert await tab.accessibility_violations(axe_source) == []
        await tab.screenshot("tasks")
        assert tab.errors == []

    async def test_the_api_s_field_errors_show_at_their_fields(
        self, tab: Tab, platform: Platform, people: People
    ) -> None:
        await tab.sign_in(people.owner)
        await _open_project(tab, platform, "submit")
        await tab.page.get_by_label("Type", exact=True).select_option("cpu.primes")

        await tab.page.get_by_label("n", exact=True).fill("-5")
        await tab.page.get_by_role("button", name="Submit", exact=True).click()

        field = tab.page.locator('[data-field="n"]')
        await expect(field.locator(".field-error")).to_contain_text("greater than or equal to 0")
        await expect(tab.page.get_by_label("n", exact=True)).to_have_attribute(
            "aria-invalid", "true"
        )
        await tab.screenshot("submit-errors")

    async def test_a_failed_task_is_resubmitted_as_a_new_one(
        self, tab: Tab, platform: Platform, people: People
    ) -> None:
        platform.start_worker(concurrency=1)
        [task_id] = await platform.submit_many(
            1, {"type": "fail", "input": {"retryable": False}, "max_attempts": 1}
        )
        await tab.sign_in(people.owner)
        await tab.page.goto(f"{platform.base_url}/console/#/t/{platform.project_id}/{task_id}")
        await expect(tab.page.get_by_test_id("task-status")).to_have_text(
            "failed", timeout=FINISH_MS
        )

        await tab.page.get_by_role("button", name="Re-submit as a new task").click()

        await expect(tab.page).not_to_have_url(re.compile(task_id))
        await expect(tab.page.get_by_test_id("task-status")).to_have_text(
            "failed", timeout=FINISH_MS
        )

    async def test_a_queued_task_is_canceled_from_its_page(
        self, tab: Tab, platform: Platform, people: People
    ) -> None:
        [task_id] = await platform.submit_many(1, {"type": "sleep", "input": {"seconds": 30}})
        await tab.sign_in(people.owner)
        await tab.page.goto(f"{platform.base_url}/console/#/t/{platform.project_id}/{task_id}")

        await tab.page.get_by_role("button", name="Cancel").click()

        await expect(tab.page.get_by_test_id("task-status")).to_have_text("canceled")


class TestViewer:
    async def test_a_viewer_sees_no_write_controls(
        self, tab: Tab, platform: Platform, people: People, axe_source: str
    ) -> None:
        [task_id] = await platform.submit_many(1, {"type": "sleep", "input": {"seconds": 30}})
        await tab.sign_in(people.viewer)
        await _open_project(tab, platform, "tasks")
        await expect(tab.page.get_by_role("link", name=task_id[:8])).to_be_visible()

        nav = tab.page.get_by_role("navigation", name="Project")
        await expect(nav).to_contain_text("viewer")
        for hidden in ("Submit", "Webhooks", "API keys"):
            await expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
        await expect(tab.page.get_by_role("button", name="Cancel")).to_have_count(0)
        await tab.screenshot("viewer-tasks")
        await tab.page.goto(f"{platform.base_url}/console/#/t/{platform.project_id}/{task_id}")
        await expect(tab.page.get_by_test_id("task-status")).to_have_text("queued")
        await expect(tab.page.get_by_role("button")).to_have_count(1)  # sign out, nothing else
        await _open_project(tab, platform, "files")
        await expect(tab.page.get_by_role("heading", name="Files")).to_be_visible()
        await expect(tab.page.get_by_label("File", exact=True)).to_have_count(0)
        await _open_project(tab, platform, "members")
        await expect(tab.page.get_by_role("row", name=re.compile(people.viewer))).to_be_visible()
        await expect(tab.page.get_by_role("button", name="Add member")).to_have_count(0)
        assert await tab.accessibility_violations(axe_source) == []
        assert tab.errors == []


class TestAdministration:
    async def test_an_owner_adds_a_member_makes_and_revokes_a_key_and_reads_the_audit_log(
        self, tab: Tab, platform: Platform, people: People, axe_source: str
    ) -> None:
        async with transaction(create_sessionmaker(platform.engine)) as session:
            newcomer = await make_user(session)
        await tab.sign_in(people.owner)
        await _open_project(tab, platform, "members")
        await tab.page.get_by_label("Email", exact=True).fill(newcomer.email)
        await tab.page.get_by_label("Role", exact=True).select_option("member")

        await tab.page.get_by_role("button", name="Add member").click()

        await expect(tab.page.get_by_role("row", name=re.compile(newcomer.email))).to_be_visible()
        await _open_project(tab, platform, "keys")
        await tab.page.get_by_label("Name", exact=True).fill("console key")
        await tab.page.get_by_role("button", name="Create key").click()
        await expect(tab.page.get_by_test_id("secret")).to_contain_text("tg_")
        key_row = tab.page.get_by_role("row", name=re.compile("console key"))
        await key_row.get_by_role("button", name="Revoke").click()
        await expect(key_row.get_by_role("button", name="Revoke")).to_have_count(0)
        await _open_project(tab, platform, "events")
        await tab.page.get_by_label("Kind", exact=True).fill("project.member_added")
        await tab.page.get_by_role("button", name="Filter").click()
        events = tab.page.get_by_role("table", name="Events")
        await expect(events).to_contain_text("project.member_added")
        await expect(events).not_to_contain_text("project.api_key_created")
        assert await tab.accessibility_violations(axe_source) == []
        await tab.screenshot("audit-log")
        assert tab.errors == []


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class TestFiles:
    async def test_an_uploaded_image_gets_a_thumbnail_shown_and_downloadable(
        self, tab: Tab, platform: Platform, people: People, tmp_path: Path
    ) -> None:
        platform.start_worker(concurrency=2)
        image = tmp_path / "photo.png"
        image.write_bytes(_png(640, 480))
        await tab.sign_in(people.owner)
        await _open_project(tab, platform, "files")

        await tab.page.get_by_label("File", exact=True).set_input_files(image)
        await tab.page.get_by_role("button", name="Upload").click()

        row = tab.page.get_by_role("row", name=re.compile("photo.png"))
        await expect(row).to_contain_text("ready")
        file_id = await row.locator("code").first.inner_text()
        await _open_project(tab, platform, "submit")
        await tab.page.get_by_label("Type", exact=True).select_option("image.thumbnail")
        await tab.page.get_by_label("file_id", exact=True).fill(file_id)
        await tab.page.get_by_label("width", exact=True).fill("64")
        await tab.page.get_by_role("button", name="Submit", exact=True).click()
        await expect(tab.page.get_by_test_id("task-status")).to_have_text(
            "succeeded", timeout=FINISH_MS
        )
        thumbnail = tab.page.get_by_role("img", name="photo.thumbnail.png")
        await expect(thumbnail).to_be_visible()
        width = await thumbnail.evaluate("(img) => img.complete ? img.naturalWidth : 0")
        assert width == 64
        await tab.screenshot("thumbnail")
        link = tab.page.locator(".file-card figcaption a")
        async with httpx.AsyncClient() as client:
            downloaded = await client.get(await link.get_attribute("href") or "")
        assert Image.open(io.BytesIO(downloaded.content)).size == (64, 48)
        assert tab.errors == []


class TestWebhooks:
    async def test_an_added_webhook_shows_its_delivery(
        self, tab: Tab, platform: Platform, people: People, axe_source: str
    ) -> None:
        platform.start_worker(concurrency=2)
        with running_receiver() as receiver:
            await tab.sign_in(people.owner)
            await _open_project(tab, platform, "webhooks")
            await tab.page.get_by_label("URL", exact=True).fill(receiver.url)

            await tab.page.get_by_role("button", name="Add webhook").click()

            await expect(tab.page.get_by_test_id("secret")).to_contain_text("whsec_")
            await platform.submit_many(1, {"type": "echo", "input": {"hello": "console"}})
            [received] = await receiver.wait_for(1, timeout_s=60)
            assert json.loads(received.body)["type"] == "task.succeeded"
            await tab.page.get_by_role("link", name=receiver.url).click()
            deliveries = tab.page.get_by_role("table", name="Deliveries")
            await expect(deliveries).to_contain_text("task.succeeded", timeout=10_000)
            await expect(deliveries).to_contain_text("200")
            await tab.page.get_by_role("button", name="Attempts").click()
            await expect(tab.page.get_by_role("table", name="Attempts")).to_contain_text("200")
            await tab.page.wait_for_timeout(3500)  # past a refresh of the deliveries
            await expect(tab.page.get_by_role("table", name="Attempts")).to_be_visible()
            assert await tab.accessibility_violations(axe_source) == []
            await tab.screenshot("webhook")
            await expect(tab.page.get_by_test_id("secret")).to_have_count(0)  # shown once only
            await tab.page.get_by_role("button", name="Rotate secret").click()
            await expect(tab.page.get_by_test_id("secret")).to_contain_text("whsec_")
            await tab.page.get_by_role("button", name="Redeliver").click()
            again = await receiver.wait_for(2, timeout_s=30)
            assert again[1].webhook_id == again[0].webhook_id  # the same delivery, sent again
        assert tab.errors == []
