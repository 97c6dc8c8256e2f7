"""What a user loses on leaving a project (removed by an admin, or leaving), and on deactivation
(every project at once): the API keys they created are revoked and, through the reactions other
domains register (`on_departure`: webhooks disables the endpoints they created), whatever else
they made that would keep acting for them. All of it in the transaction of the removal, with an
event for each key and endpoint.

Rows without a creator (`created_by` NULL: made by an operator on the command line, or before it
was recorded) are left alone.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.principal import Principal
from app.auth.principal_cache import principals
from app.core.db import after_commit, utc_now
from app.events import service as event_service
from app.projects import member_roles
from app.projects.repository import ApiKeyRepository


class DepartureReason(enum.StrEnum):
    creator_removed = "creator_removed"
    creator_left = "creator_left"
    creator_deactivated = "creator_deactivated"

    @property
    def detail(self) -> str:
        """Why, for people (`disabled_reason` of an endpoint)."""
        return {
            DepartureReason.creator_removed: "its creator was removed from the project",
            DepartureReason.creator_left: "its creator left the project",
            DepartureReason.creator_deactivated: "its creator was deactivated",
        }[self]


@dataclass(frozen=True)
class Departure:
    """A user leaving one project, or every project (`project_id` None: deactivated)."""

    user_id: uuid.UUID
    project_id: uuid.UUID | None
    reason: DepartureReason
    # Who removed them (an admin, themselves); None for an operator.
    actor: Principal | None


Reaction = Callable[[AsyncSession, Departure], Awaitable[None]]
_reactions: list[Reaction] = []


def on_departure(reaction: Reaction) -> None:
    """Call `reaction` in the transaction of every departure from now on (idempotent)."""
    if reaction not in _reactions:
        _reactions.append(reaction)


async def revoke_what_they_created(session: AsyncSession, departure: Departure) -> None:
    """Revoke the user's keys and run every reaction. Before the caller records its own event:
    the reactions disable endpoints first, so no event of the departure reaches them."""
    for reaction in _reactions:
        await reaction(session, departure)
    revoked = await ApiKeyRepository(session).revoke_created_by(
        departure.user_id, project_id=departure.project_id, now=utc_now()
    )
    for api_key in revoked:
        event_service.record(
            session,
            "project.api_key_revoked",
            project_id=api_key.project_id,
            subject_id=api_key.id,
            actor=departure.actor,
            data={
                "name": api_key.name,
                "prefix": api_key.prefix,
                "reason": departure.reason.value,
                "created_by": str(departure.user_id),
            },
        )
    if revoked:
        # This process forgets them at once; the others within `security.principal_cache_s`.
        key_ids = [api_key.id for api_key in revoked]
        after_commit(session, lambda: principals.forget_api_keys(key_ids))


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, actor: Principal | None
) -> bool:
    """Deactivate the user and, in the same transaction, revoke what they created in every
    project. False when they were inactive already (what they created is swept again anyway:
    repeating it is how to catch up on keys left from before this was done)."""
    departure = Departure(
        user_id=user_id, project_id=None, reason=DepartureReason.creator_deactivated, actor=actor
    )
    await revoke_what_they_created(session, departure)
    # Their access tokens and roles, remembered here, go at once; elsewhere within a second.
    after_commit(session, lambda: principals.forget_user(user_id))
    after_commit(session, lambda: member_roles.forget_user(user_id))
    return await auth_service.deactivate_user(session, user_id=user_id, actor=actor)
