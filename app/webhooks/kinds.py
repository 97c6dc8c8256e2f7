"""The event kinds an endpoint may subscribe to; `*` means all of them."""

from __future__ import annotations

ALL_KINDS = "*"

# Audit events that reach webhooks. `webhook.*` events never do: a failing endpoint must not
# feed deliveries about its own failures back into the outbox.
EVENT_KINDS = frozenset(
    {
        "task.created",
        "task.started",
        "task.succeeded",
        "task.failed",
        "task.canceled",
        "task.retrying",
        "task.requeued",
        "task.cancel_requested",
        "file.created",
        "file.uploaded",
        "file.ready",
        "file.deleted",
        "project.updated",
        "project.member_added",
        "project.member_removed",
        "project.member_role_changed",
        "project.api_key_created",
        "project.api_key_revoked",
    }
)


def is_deliverable(kind: str) -> bool:
    return kind in EVENT_KINDS
