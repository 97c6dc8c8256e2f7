"""What a request costs in rate limits (`core/ratelimit.py`), and who it is charged to.

Every authenticated request draws from one bucket of its caller. Requests other than task
submissions draw from the caller's read bucket as soon as the caller is known
(`auth.dependencies`). A submission (a route marked `SUBMIT`) draws once its role is checked and
its input validated, just before anything is written (`admit_submit`): from the caller's submit
bucket, and it counts towards its project's backlog of unfinished tasks (`max_queued_tasks`) and
the platform's (`tasks.max_unfinished_tasks`); past either it is refused, whatever the bucket.
One refused by its role check (403, 404) draws from the read bucket instead (`refuse_submit`).
An API key's buckets are its own, at its project's limits; a user's are per project where the
path names one (at that project's limits if they are a member, else at the deployment's
defaults: an outsider's 404 shows nothing of the project), else per user at the defaults. Sign-in
and registration, before any credential is checked, draw from the client address's bucket and
the named email's.
"""

from __future__ import annotations

import hashlib
import math
import uuid

from fastapi import Request

from app.auth.principal import Principal
from app.core.config import Settings
from app.core.metrics import RATE_LIMITED
from app.core.middleware import add_response_headers, client_address
from app.core.ratelimit import (
    ALL_PROJECTS,
    BACKLOG_KEY,
    BacklogFull,
    Bucket,
    Cap,
    Limit,
    RateLimited,
    RateLimiter,
    RatesOf,
    SystemBacklogFull,
    Verdict,
)

# `openapi_extra` of a route whose requests draw from the submit bucket (documented there too).
RATE_LIMIT_SCOPE = "x-rate-limit-scope"
SUBMIT = {RATE_LIMIT_SCOPE: "submit"}


class Admission:
    """The API process's rate limits: `app.state.admission` (absent when they are disabled)."""

    def __init__(self, limiter: RateLimiter, *, settings: Settings, rates_of: RatesOf) -> None:
        self.limiter = limiter
        self.settings = settings
        self.rates_of = rates_of

    async def admit(self, request: Request, principal: Principal) -> None:
        """Charge the request to its caller; `RateLimited` (429) when their bucket is empty."""
        if _is_submit(request):
            return  # charged by `admit_submit`, once the role is checked and the input valid
        await self._read(request, principal)

    async def refuse_submit(self, request: Request, principal: Principal) -> None:
        """A submission refused by its role check, which `admit_submit` will never charge:
        drawn from the caller's read bucket like any other request (so refusals are limited
        too, and answer with `RateLimit-*`). A no-op on other routes, charged by `admit`."""
        if _is_submit(request):
            await self._read(request, principal)

    async def _read(self, request: Request, principal: Principal) -> None:
        project_id = principal.api_key_project_id or _path_project(request)
        # A key's project is its own; a user's is the path's, whose rates are for its members.
        member = principal.actor_id if principal.user is not None else None
        rates = await self.rates_of(request.app.state.sessionmaker, project_id, member)
        bucket = Bucket(_bucket_key("read", principal, project_id), rates.read_per_minute)
        await self._check(request, "read", [bucket], "requests")

    async def admit_submit(
        self, request: Request, principal: Principal, project_id: uuid.UUID
    ) -> None:
        """Charge a submission to its caller's submit bucket and count it in the backlogs:
        `RateLimited` or `BacklogFull` (429), `SystemBacklogFull` (503)."""
        # The role is checked already: the project's rates apply.
        rates = await self.rates_of(request.app.state.sessionmaker, project_id, None)
        project_cap = Cap(BACKLOG_KEY, str(project_id), rates.max_queued_tasks)
        limits: list[Limit] = [
            Bucket(_bucket_key("submit", principal, project_id), rates.submit_per_minute),
            project_cap,
            Cap(BACKLOG_KEY, ALL_PROJECTS, self.settings.tasks.max_unfinished_tasks),
        ]
        verdict = await self.limiter.check(limits)
        add_response_headers(request.scope, verdict.headers())
        if verdict.admitted:
            return
        # The scheduler sets the backlogs back from PostgreSQL on each pass.
        retry_after_s = max(1, math.ceil(self.settings.tasks.scheduler_interval_s))
        if verdict.refused_by is project_cap:
            RATE_LIMITED.labels(scope="backlog").inc()
            raise BacklogFull(verdict, retry_after_s)
        if isinstance(verdict.refused_by, Cap):
            RATE_LIMITED.labels(scope="system_backlog").inc()
            raise SystemBacklogFull(retry_after_s)
        RATE_LIMITED.labels(scope="submit").inc()
        raise RateLimited(verdict, "task submissions")

    async def sign_in(self, request: Request, email: str) -> None:
        """Before a password is checked: the client address's and the email's buckets."""
        limits = self.settings.rate_limits
        buckets = [
            Bucket(f"sign_in:ip:{self._client(request)}", limits.sign_in_per_ip_per_minute),
            Bucket(f"sign_in:email:{_digest(email)}", limits.sign_in_per_email_per_minute),
        ]
        await self._check(request, "sign_in", buckets, "sign-in attempts")

    async def register(self, request: Request) -> None:
        """Before an account is made: the client address's bucket."""
        limit = self.settings.rate_limits.register_per_ip_per_minute
        buckets = [Bucket(f"register:ip:{self._client(request)}", limit)]
        await self._check(request, "register", buckets, "registrations")

    def _client(self, request: Request) -> str:
        return client_address(request.scope, self.settings.api.trusted_proxies)

    async def _check(
        self, request: Request, scope: str, buckets: list[Bucket], what: str
    ) -> Verdict:
        verdict = await self.limiter.check(buckets)
        add_response_headers(request.scope, verdict.headers())
        if not verdict.admitted:
            RATE_LIMITED.labels(scope=scope).inc()
            raise RateLimited(verdict, what)
        return verdict


def _is_submit(request: Request) -> bool:
    extra = getattr(request.scope.get("route"), "openapi_extra", None) or {}
    return bool(extra.get(RATE_LIMIT_SCOPE) == "submit")


def _bucket_key(scope: str, principal: Principal, project_id: uuid.UUID | None) -> str:
    if principal.api_key_project_id is not None:
        return f"{scope}:key:{principal.actor_id}"
    return f"{scope}:user:{principal.actor_id}:{project_id or '-'}"


def _path_project(request: Request) -> uuid.UUID | None:
    raw = request.path_params.get("project_id")
    if not isinstance(raw, str):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:  # the route answers 422 for it; the defaults apply meanwhile
        return None


def _digest(email: str) -> str:
    """An email as a bucket name: a digest, so Redis never holds the address itself."""
    return hashlib.blake2b(email.strip().lower().encode(), digest_size=16).hexdigest()


def admission_of(request: Request) -> Admission | None:
    admission: Admission | None = getattr(request.app.state, "admission", None)
    return admission
