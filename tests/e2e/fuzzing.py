"""schemathesis hooks for `test_fuzz.py`, loaded by its CLI (`SCHEMATHESIS_HOOKS`).

Path ids are drawn from three pools: the fuzzing tenant's own objects, a second tenant's, and
whatever UUID schemathesis generated (an object nobody has). Destructive routes on the
project itself get projects of their own, so the rest of the run keeps its data. The check
`tenant_boundary` holds every answer to the second tenant's ids to a 404 (or a refusal of the
request before any lookup) and every answer's body free of the second tenant's ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

import schemathesis
from schemathesis import APIOperation, Case, CheckContext, HookContext, Response

Operation = APIOperation[Any, Any, Any, Any]

IDS_VARIABLE = "TASKGATE_FUZZ_IDS"

# {"own": {"project_id": [...], ...}, "other": {...}, "disposable_projects": [...]}
_IDS: dict[str, Any] = json.loads(os.environ.get(IDS_VARIABLE, "{}"))
_OWN: dict[str, list[str]] = _IDS.get("own", {})
_OTHER: dict[str, list[str]] = _IDS.get("other", {})
_DISPOSABLE: list[str] = _IDS.get("disposable_projects", [])
_OTHER_IDS = frozenset(value for values in _OTHER.values() for value in values)
# Users are found by email (adding a member names them): their ids are no secret of a tenant.
_LEAKABLE = frozenset(
    value for name, values in _OTHER.items() if name != "user_id" for value in values
)

# What changes or removes the project itself (its settings, its existence).
_ON_THE_PROJECT = {("PATCH", "/v1/projects/{project_id}"), ("DELETE", "/v1/projects/{project_id}")}
# Refusals that come before any object is looked up: a body too large, or not JSON at all, or
# invalid; a route the caller's token may not use; a busy rate limit or database.
_BEFORE_LOOKUP = {400, 401, 405, 413, 415, 422, 429, 503}
# A long-poll answers when its task finishes or its `wait` runs out: seconds of nothing to see.
MAX_WAIT_S = 1


def _pick(seed: str, options: list[list[str]]) -> str:
    """One of the ids of one of the pools, chosen by `seed` alone: the run stays as
    deterministic as schemathesis's own seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    pool = options[digest[0] % len(options)]
    return pool[int.from_bytes(digest[1:5], "big") % len(pool)]


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@schemathesis.hook
def map_case(context: HookContext, case: Case[Operation]) -> Case[Operation]:
    """Replace generated path ids by the fuzzing tenant's, the second tenant's or neither, and
    shorten long-polls."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and wait > MAX_WAIT_S:
        case.query["wait"] = MAX_WAIT_S
    parameters = case.path_parameters
    if not parameters or (case.meta is not None and case.meta.phase.name == "stateful"):
        return case  # the stateful phase follows links: its ids are what it just created
    key = (case.operation.method.upper(), case.operation.path)
    for name, value in list(parameters.items()):
        if not _is_uuid(value):
            continue  # a malformed id is the point of this case: keep it
        own = _DISPOSABLE if key in _ON_THE_PROJECT else _OWN.get(name, [])
        pools = [pool for pool in (own, _OTHER.get(name, []), [str(value)]) if pool]
        parameters[name] = _pick(f"{key}:{name}:{value}", pools)
    return case


def _without_instance(body: Any) -> Any:
    """A problem's `instance` repeats the request's path, ids included: not a leak."""
    if isinstance(body, dict):
        return {key: value for key, value in body.items() if key != "instance"}
    return body


@schemathesis.check
def tenant_boundary(ctx: CheckContext, response: Response, case: Case[Operation]) -> bool | None:
    """Another tenant's object is a 404 (never a 403, never a 2xx), and no answer names one."""
    named = [value for value in (case.path_parameters or {}).values() if value in _OTHER_IDS]
    status = response.status_code
    if named and status not in {404, *_BEFORE_LOOKUP}:
        raise AssertionError(f"another tenant's {named} answered {status}, not 404")
    text = response.text or ""
    if any(value in text for value in _LEAKABLE):
        try:
            body = json.dumps(_without_instance(json.loads(text)))
        except ValueError:
            body = text
        leaked = sorted(value for value in _LEAKABLE if value in body)
        if leaked:
            raise AssertionError(f"the answer names another tenant's objects: {leaked}")
    return None
