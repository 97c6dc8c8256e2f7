"""The rows of the access matrix (`test_access_matrix.py`): for every operation of the served
OpenAPI document, how to call it in a world of real objects, who may, and what it answers.

Callers and what they are:

- `anonymous`: no `Authorization` header; `key_revoked`: a revoked key of the project;
  `deactivated`: a member whose user was deactivated (`taskgate users deactivate`). They get the
  `401` of every authenticated route.
- `outsider`: a user of another tenant (they own a project of their own); `removed_member`: a
  user who was a viewer of the project and was removed; `key_of_other_project`: a write key of
  the outsider's project. In the project they get the `404` of an unknown project (or, for an
  object of the project, of an unknown object); on user-only routes the users pass.
- `viewer`, `member`, `admin`, `owner`: users with that role; `key_rw` acts as `member`,
  `key_ro` as `viewer` (`projects.service.api_key_role`). A key is a `403` on user-only routes.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, RefreshToken, User
from app.core.db import utc_now
from app.core.security import issue_refresh_token
from app.events import service as event_service
from app.files.models import File, FileStatus
from app.files.storage import Storage, object_key
from app.projects.models import ROLE_RANK, ApiKeyScope, Project, ProjectMember, Role
from app.tasks.models import Task, TaskStatus
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import new_secret
from tests.factories import (
    DEFAULT_PASSWORD,
    add_member,
    auth_headers,
    make_api_key,
    make_project,
    make_user,
    security_settings,
)


class Access(enum.Enum):
    """Who may call an operation when no project role decides it."""

    public = "no credentials needed; any header is ignored"
    user = "a user's access token only (an API key is a 403)"
    principal = "any valid credential, user or key"


# caller -> the role it acts with in the world's project (None: no access to it at all).
CALLERS: dict[str, Role | None] = {
    "anonymous": None,
    "outsider": None,
    "viewer": Role.viewer,
    "member": Role.member,
    "admin": Role.admin,
    "owner": Role.owner,
    "key_rw": Role.member,
    "key_ro": Role.viewer,
    "key_of_other_project": None,
    "key_revoked": None,
    "removed_member": None,
    "deactivated": None,
}
UNAUTHENTICATED = {"anonymous", "key_revoked", "deactivated"}
KEYS = {"key_rw", "key_ro", "key_of_other_project", "key_revoked"}


@dataclass
class World:
    """A project with a caller of every kind and one object of every kind in it."""

    project: Project
    other_project: Project
    users: dict[str, User]
    headers: dict[str, dict[str, str]]  # caller -> its Authorization header (none: anonymous)
    task: Task
    file: File
    endpoint: WebhookEndpoint
    delivery: WebhookDelivery
    storage: Storage


async def build_world(session: AsyncSession, storage: Storage) -> World:
    users = {name: await make_user(session) for name in ("owner", "outsider")}
    # Rates of its own, which a caller outside it must never see in its RateLimit-* headers.
    project = await make_project(
        session, owner=users["owner"], settings={"read_rate_per_minute": 100_000}
    )
    other_project = await make_project(session, owner=users["outsider"])
    for role in (Role.admin, Role.member, Role.viewer):
        users[role.value] = await make_user(session)
        await add_member(session, project, users[role.value], role)
    users["removed_member"] = removed = await make_user(session)
    member = await add_member(session, project, removed, Role.viewer)
    await session.delete(member)
    users["deactivated"] = await make_user(session, is_active=False)
    await add_member(session, project, users["deactivated"], Role.member)
    headers = {name: auth_headers(user) for name, user in users.items()}
    headers["anonymous"] = {}
    for name, scopes, in_project in (
        ("key_rw", [ApiKeyScope.read, ApiKeyScope.write], project),
        ("key_ro", [ApiKeyScope.read], project),
        ("key_of_other_project", [ApiKeyScope.read, ApiKeyScope.write], other_project),
        ("key_revoked", [ApiKeyScope.read, ApiKeyScope.write], project),
    ):
        api_key, secret = await make_api_key(session, in_project, scopes=scopes, name=name)
        headers[name] = auth_headers(secret)
        if name == "key_revoked":
            api_key.revoked_at = utc_now()
    endpoint = await make_endpoint(session, project)
    event = event_service.record(
        session,
        "task.succeeded",
        project_id=project.id,
        subject_id=uuid.uuid4(),
        actor=None,
        data={},
    )
    await session.flush()  # the outbox writes the endpoint's delivery at the flush
    delivery = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.event_id == event.id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )
    assert delivery is not None, "the world's event made no delivery"
    return World(
        project=project,
        other_project=other_project,
        users=users,
        headers=headers,
        task=await make_task(session, project),
        file=await make_file(session, project),
        endpoint=endpoint,
        delivery=delivery,
        storage=storage,
    )


async def make_task(session: AsyncSession, project: Project) -> Task:
    task = Task(
        project_id=project.id,
        type="echo",
        input={},
        status=TaskStatus.queued,
        max_attempts=3,
        timeout_s=30,
        created_at=utc_now(),
    )
    session.add(task)
    await session.flush()
    return task


async def make_file(
    session: AsyncSession, project: Project, status: FileStatus = FileStatus.ready
) -> File:
    """A file row of 3 bytes, without its object (no route but `complete` needs it)."""
    file_id = uuid.uuid4()
    file = File(
        id=file_id,
        project_id=project.id,
        key=object_key(project.id, "uploads", str(file_id)),
        filename="data.txt",
        content_type="text/plain",
        size=3,
        status=status,
        created_at=utc_now(),
    )
    session.add(file)
    await session.flush()
    return file


async def make_endpoint(session: AsyncSession, project: Project) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        project_id=project.id,
        url="https://hooks.example.com/matrix",
        event_kinds=["*"],
        secret=new_secret(),
        enabled=True,
        created_at=utc_now(),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def make_refresh_token(session: AsyncSession, user: User) -> str:
    issued = issue_refresh_token(security_settings(), subject=user.id, token_id=uuid.uuid4())
    session.add(
        RefreshToken(
            id=issued.token_id,
            user_id=user.id,
            family_id=uuid.uuid4(),
            expires_at=issued.expires_at,
            created_at=utc_now(),
        )
    )
    await session.flush()
    return issued.token


# --- rows -------------------------------------------------------------------------------------

Fresh = dict[str, Any]  # objects made for one case only: what a destructive operation consumes


@dataclass(frozen=True)
class Call:
    """A request: the path template's parameters and httpx's keyword arguments."""

    params: Mapping[str, object] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    least: Role | Access
    success: int
    call: Callable[[World, Fresh], Call]
    # The problem type of a caller with no access: the project's, or the object's of the path.
    hidden: str = "project-not-found"
    # Objects made for each case (a member to remove, a key to revoke), from the world.
    fresh: Callable[[AsyncSession, World], Awaitable[Fresh]] | None = None
    # What a refused call must leave as it was, read before and after it.
    state: Callable[[AsyncSession, World, Fresh], Awaitable[object]] | None = None
    own_world: bool = False  # each case gets a world of its own (deleting the project)

    def expected(self, caller: str) -> tuple[int, str | None]:
        """The status `caller` gets, and the problem type of a refusal."""
        if self.least is Access.public:
            return self.success, None
        if caller in UNAUTHENTICATED:
            return 401, "invalid-credentials"
        if self.least is Access.principal:
            return self.success, None
        if self.least is Access.user:
            return (403, "user-token-required") if caller in KEYS else (self.success, None)
        role = CALLERS[caller]
        if role is None:
            return 404, self.hidden
        if ROLE_RANK[role] < ROLE_RANK[self.least]:
            return 403, "insufficient-role"
        return self.success, None


def _project(world: World, _fresh: Fresh) -> Call:
    return Call({"project_id": world.project.id})


def _task(world: World, _fresh: Fresh) -> Call:
    return Call({"task_id": world.task.id})


def _file(world: World, _fresh: Fresh) -> Call:
    return Call({"file_id": world.file.id})


def _endpoint(world: World, _fresh: Fresh) -> Call:
    return Call({"endpoint_id": world.endpoint.id})


def _delivery(world: World, _fresh: Fresh) -> Call:
    return Call({"endpoint_id": world.endpoint.id, "delivery_id": world.delivery.id})


def _plain(_world: World, _fresh: Fresh) -> Call:
    return Call()


async def _count(session: AsyncSession, model: Any, project: Project) -> int:
    found = await session.scalar(
        select(func.count()).select_from(model).where(model.project_id == project.id)
    )
    return int(found or 0)


async def _role_of(session: AsyncSession, project: Project, user: User) -> Role | None:
    return await session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project.id, ProjectMember.user_id == user.id
        )
    )


async def _fresh_user(session: AsyncSession, _world: World) -> Fresh:
    return {"user": await make_user(session)}


async def _fresh_viewer(session: AsyncSession, world: World) -> Fresh:
    user = await make_user(session)
    await add_member(session, world.project, user, Role.viewer)
    return {"user": user}


async def _fresh_key(session: AsyncSession, world: World) -> Fresh:
    api_key, _ = await make_api_key(session, world.project, name="to revoke")
    return {"key": api_key}


async def _fresh_task(session: AsyncSession, world: World) -> Fresh:
    return {"task": await make_task(session, world.project)}


async def _fresh_file(session: AsyncSession, world: World) -> Fresh:
    return {"file": await make_file(session, world.project)}


async def _fresh_upload(session: AsyncSession, world: World) -> Fresh:
    """A pending file whose bytes are in S3, as a presigned PUT leaves it before `complete`."""
    file = await make_file(session, world.project, FileStatus.pending)
    await asyncio.to_thread(world.storage.put, file.key, b"abc", content_type=file.content_type)
    return {"file": file}


async def _fresh_endpoint(session: AsyncSession, world: World) -> Fresh:
    return {"endpoint": await make_endpoint(session, world.project)}


async def _fresh_refresh_token(session: AsyncSession, _world: World) -> Fresh:
    user = await make_user(session)
    return {"token": await make_refresh_token(session, user)}


async def _project_name(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await session.scalar(select(Project.name).where(Project.id == world.project.id))


async def _project_exists(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await session.get(Project, world.project.id, populate_existing=True) is not None


async def _fresh_users_role(session: AsyncSession, world: World, fresh: Fresh) -> object:
    return await _role_of(session, world.project, fresh["user"])


async def _key_revoked(session: AsyncSession, _world: World, fresh: Fresh) -> object:
    return await session.scalar(select(ApiKey.revoked_at).where(ApiKey.id == fresh["key"].id))


async def _key_count(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await _count(session, ApiKey, world.project)


async def _task_count(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await _count(session, Task, world.project)


async def _fresh_task_status(session: AsyncSession, _world: World, fresh: Fresh) -> object:
    return await session.scalar(select(Task.status).where(Task.id == fresh["task"].id))


async def _file_count(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await _count(session, File, world.project)


async def _fresh_file_status(session: AsyncSession, _world: World, fresh: Fresh) -> object:
    return await session.scalar(select(File.status).where(File.id == fresh["file"].id))


async def _endpoint_count(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    return await _count(session, WebhookEndpoint, world.project)


async def _endpoint_row(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    row = await session.execute(
        select(
            WebhookEndpoint.url,
            WebhookEndpoint.event_kinds,
            WebhookEndpoint.enabled,
            WebhookEndpoint.secret,
        ).where(WebhookEndpoint.id == world.endpoint.id)
    )
    return tuple(row.one())


async def _fresh_endpoint_exists(session: AsyncSession, _world: World, fresh: Fresh) -> object:
    found = await session.scalar(
        select(WebhookEndpoint.id).where(WebhookEndpoint.id == fresh["endpoint"].id)
    )
    return found is not None


async def _delivery_row(session: AsyncSession, world: World, _fresh: Fresh) -> object:
    row = await session.execute(
        select(
            WebhookDelivery.state,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.schedule_start_attempt,
        ).where(WebhookDelivery.id == world.delivery.id)
    )
    return tuple(row.one())


async def _project_count(session: AsyncSession, _world: World, _fresh: Fresh) -> object:
    return await session.scalar(select(func.count()).select_from(Project))


def _with(build: Callable[[World, Fresh], Call], **options: Any) -> Callable[[World, Fresh], Call]:
    return lambda world, fresh: Call(build(world, fresh).params, options)


P = "/v1/projects/{project_id}"
WEBHOOK = "/v1/webhooks/{endpoint_id}"
DELIVERY = WEBHOOK + "/deliveries/{delivery_id}"

# operation id -> its row. An operation of the served document without a row fails the matrix,
# and so does a row whose operation is gone.
ROWS: dict[str, Row] = {
    # --- no credentials -----------------------------------------------------------------------
    "get_liveness": Row("GET", "/health/live", Access.public, 200, _plain),
    "get_readiness": Row("GET", "/health/ready", Access.public, 200, _plain),
    "get_metrics": Row("GET", "/metrics", Access.public, 200, _plain),
    "list_task_types": Row("GET", "/v1/task-types", Access.public, 200, _plain),
    "register_user": Row(
        "POST",
        "/v1/auth/register",
        Access.public,
        201,
        lambda _w, _f: Call(
            options={
                "json": {
                    "email": f"new-{uuid.uuid4().hex[:12]}@example.com",
                    "password": DEFAULT_PASSWORD,
                }
            }
        ),
    ),
    "create_token": Row(
        "POST",
        "/v1/auth/token",
        Access.public,
        200,
        lambda _w, fresh: Call(
            options={"data": {"username": fresh["user"].email, "password": DEFAULT_PASSWORD}}
        ),
        fresh=_fresh_user,  # a user each: sign-ins are limited per email
    ),
    "refresh_token": Row(
        "POST",
        "/v1/auth/refresh",
        Access.public,
        200,
        lambda _w, fresh: Call(options={"json": {"refresh_token": fresh["token"]}}),
        fresh=_fresh_refresh_token,  # each works once
    ),
    # --- a user, or any caller ----------------------------------------------------------------
    "get_me": Row("GET", "/v1/users/me", Access.user, 200, _plain),
    "create_project": Row(
        "POST",
        "/v1/projects",
        Access.user,
        201,
        lambda _w, _f: Call(options={"json": {"name": "mine"}}),
        state=_project_count,
    ),
    "list_projects": Row("GET", "/v1/projects", Access.principal, 200, _plain),
    # --- projects, members, keys, events ------------------------------------------------------
    "get_project": Row("GET", P, Role.viewer, 200, _project),
    "update_project": Row(
        "PATCH",
        P,
        Role.admin,
        200,
        _with(_project, json={"name": "renamed"}),
        state=_project_name,
    ),
    "delete_project": Row(
        "DELETE", P, Role.owner, 204, _project, state=_project_exists, own_world=True
    ),
    "list_members": Row("GET", P + "/members", Role.viewer, 200, _project),
    "add_member": Row(
        "POST",
        P + "/members",
        Role.admin,
        201,
        lambda world, fresh: Call(
            {"project_id": world.project.id},
            {"json": {"email": fresh["user"].email, "role": "viewer"}},
        ),
        fresh=_fresh_user,
        state=_fresh_users_role,
    ),
    "update_member": Row(
        "PATCH",
        P + "/members/{user_id}",
        Role.admin,
        200,
        lambda world, fresh: Call(
            {"project_id": world.project.id, "user_id": fresh["user"].id},
            {"json": {"role": "member"}},
        ),
        fresh=_fresh_viewer,
        state=_fresh_users_role,
    ),
    "remove_member": Row(
        "DELETE",
        P + "/members/{user_id}",
        # Removing another member; leaving (your own id) is open to any member:
        # tests/integration/projects/test_projects.py::TestMembers::test_any_member_can_leave
        Role.admin,
        204,
        lambda world, fresh: Call({"project_id": world.project.id, "user_id": fresh["user"].id}),
        fresh=_fresh_viewer,
        state=_fresh_users_role,
    ),
    "list_api_keys": Row("GET", P + "/api-keys", Role.admin, 200, _project),
    "create_api_key": Row(
        "POST",
        P + "/api-keys",
        Role.admin,
        201,
        _with(_project, json={"name": "ci"}),
        state=_key_count,
    ),
    "revoke_api_key": Row(
        "DELETE",
        P + "/api-keys/{key_id}",
        Role.admin,
        204,
        lambda world, fresh: Call({"project_id": world.project.id, "key_id": fresh["key"].id}),
        fresh=_fresh_key,
        state=_key_revoked,
    ),
    "list_events": Row("GET", P + "/events", Role.viewer, 200, _project),
    # --- tasks --------------------------------------------------------------------------------
    "submit_task": Row(
        "POST",
        P + "/tasks",
        Role.member,
        202,
        _with(_project, json={"type": "echo", "input": {"matrix": True}}),
        state=_task_count,
    ),
    "list_tasks": Row("GET", P + "/tasks", Role.viewer, 200, _project),
    "get_task": Row("GET", "/v1/tasks/{task_id}", Role.viewer, 200, _task, hidden="task-not-found"),
    "cancel_task": Row(
        "POST",
        "/v1/tasks/{task_id}/cancel",
        Role.member,
        202,
        lambda _w, fresh: Call({"task_id": fresh["task"].id}),
        hidden="task-not-found",
        fresh=_fresh_task,
        state=_fresh_task_status,
    ),
    "list_task_events": Row(
        "GET", "/v1/tasks/{task_id}/events", Role.viewer, 200, _task, hidden="task-not-found"
    ),
    # --- files --------------------------------------------------------------------------------
    "create_file": Row(
        "POST",
        P + "/files",
        Role.member,
        201,
        _with(_project, json={"filename": "a.txt", "content_type": "text/plain", "size": 3}),
        state=_file_count,
    ),
    "upload_file": Row(
        "POST",
        P + "/files:upload",
        Role.member,
        201,
        _with(_project, files={"file": ("a.txt", b"abc", "text/plain")}),
        state=_file_count,
    ),
    "list_files": Row("GET", P + "/files", Role.viewer, 200, _project),
    "get_file": Row("GET", "/v1/files/{file_id}", Role.viewer, 200, _file, hidden="file-not-found"),
    "complete_file": Row(
        "POST",
        "/v1/files/{file_id}/complete",
        Role.member,
        200,
        lambda _w, fresh: Call({"file_id": fresh["file"].id}),
        hidden="file-not-found",
        fresh=_fresh_upload,
        state=_fresh_file_status,
    ),
    "delete_file": Row(
        "DELETE",
        "/v1/files/{file_id}",
        Role.member,
        204,
        lambda _w, fresh: Call({"file_id": fresh["file"].id}),
        hidden="file-not-found",
        fresh=_fresh_file,
        state=_fresh_file_status,
    ),
    # --- webhooks (all admin) -----------------------------------------------------------------
    "list_webhooks": Row("GET", P + "/webhooks", Role.admin, 200, _project),
    "create_webhook": Row(
        "POST",
        P + "/webhooks",
        Role.admin,
        201,
        _with(_project, json={"url": "https://hooks.example.com/new", "events": ["task.failed"]}),
        state=_endpoint_count,
    ),
    "get_webhook": Row("GET", WEBHOOK, Role.admin, 200, _endpoint, hidden="webhook-not-found"),
    "update_webhook": Row(
        "PATCH",
        WEBHOOK,
        Role.admin,
        200,
        _with(_endpoint, json={"events": ["task.failed"]}),
        hidden="webhook-not-found",
        state=_endpoint_row,
    ),
    "delete_webhook": Row(
        "DELETE",
        WEBHOOK,
        Role.admin,
        204,
        lambda _w, fresh: Call({"endpoint_id": fresh["endpoint"].id}),
        hidden="webhook-not-found",
        fresh=_fresh_endpoint,
        state=_fresh_endpoint_exists,
    ),
    "rotate_webhook_secret": Row(
        "POST",
        WEBHOOK + "/rotate-secret",
        Role.admin,
        200,
        _endpoint,
        hidden="webhook-not-found",
        state=_endpoint_row,
    ),
    "list_webhook_deliveries": Row(
        "GET", WEBHOOK + "/deliveries", Role.admin, 200, _endpoint, hidden="webhook-not-found"
    ),
    "get_webhook_delivery": Row(
        "GET", DELIVERY, Role.admin, 200, _delivery, hidden="webhook-not-found"
    ),
    "redeliver_webhook_delivery": Row(
        "POST",
        DELIVERY + "/redeliver",
        Role.admin,
        202,
        _delivery,
        hidden="webhook-not-found",
        state=_delivery_row,
    ),
}
