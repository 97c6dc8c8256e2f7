"""The event kinds an endpoint may subscribe to; `*` means all of them."""

from __future__ import annotations

import enum


class EventKind(enum.StrEnum):
    """What an endpoint subscribes to: audit events that reach webhooks, or `*` for every one.
    `webhook.*` events never do: a failing endpoint must not feed deliveries about its own
    failures back into the outbox."""

    all = "*"
    task_created = "task.created"
    task_started = "task.started"
    task_succeeded = "task.succeeded"
    task_failed = "task.failed"
    task_canceled = "task.canceled"
    task_retrying = "task.retrying"
    task_requeued = "task.requeued"
    task_cancel_requested = "task.cancel_requested"
    file_created = "file.created"
    file_uploaded = "file.uploaded"
    file_ready = "file.ready"
    file_deleted = "file.deleted"
    project_updated = "project.updated"
    project_member_added = "project.member_added"
    project_member_removed = "project.member_removed"
    project_member_role_changed = "project.member_role_changed"
    project_api_key_created = "project.api_key_created"
    project_api_key_revoked = "project.api_key_revoked"


ALL_KINDS = EventKind.all.value
EVENT_KINDS = frozenset(kind.value for kind in EventKind if kind is not EventKind.all)


def is_deliverable(kind: str) -> bool:
    return kind in EVENT_KINDS
