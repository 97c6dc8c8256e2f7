"""The backlogs that submit's caps count (`core/ratelimit.BACKLOG_KEY`), set back from PostgreSQL.

A submit adds one to its project's count (and to `*`, all projects) as it is admitted
(`auth/admission.py`); nothing subtracts as tasks finish, so a count only ever errs high between
passes. On every pass the scheduler counts the unfinished tasks (queued, retrying, running) of
each project and sets each count to that, plus what was admitted while it counted (read before
and after): a task finished frees its place within one pass. A submit admitted but not yet
committed when the count is taken is in neither, so a cap may be passed by the submits in flight
at that instant; a flushed or restarted Redis is whole again after one pass.
"""

from __future__ import annotations

import logging

from app.core.ratelimit import ALL_PROJECTS, BACKLOG_KEY, REDIS_ERRORS
from app.core.scheduling import StepContext
from app.core.sql import driver_connection

log = logging.getLogger(__name__)

UNFINISHED_BY_PROJECT = """
SELECT project_id::text, count(*) FROM tasks
WHERE status IN ('queued', 'retrying', 'running')
GROUP BY project_id
"""

# KEYS[1]: the backlog hash. ARGV: triples of field, count in PostgreSQL, value read before that
# count. Each field becomes count + (value now - value before); zero or less removes it.
_RESET = """
for i = 1, #ARGV, 3 do
  local field = ARGV[i]
  local now = tonumber(redis.call('HGET', KEYS[1], field) or 0)
  local value = tonumber(ARGV[i + 1]) + now - tonumber(ARGV[i + 2])
  if value > 0 then
    redis.call('HSET', KEYS[1], field, value)
  else
    redis.call('HDEL', KEYS[1], field)
  end
end
return redis.call('HLEN', KEYS[1])
"""


async def scheduler_step(context: StepContext) -> dict[str, int]:
    """Set every project's backlog (and the platform's) to its unfinished tasks."""
    redis = context.redis
    try:
        before = {
            _text(field): int(value) for field, value in (await redis.hgetall(BACKLOG_KEY)).items()
        }
    except REDIS_ERRORS as exc:
        log.warning("backlogs not reset: Redis failed", extra={"error": repr(exc)})
        return {}
    async with driver_connection(context.sessionmaker) as driver:
        rows = await driver.fetch(UNFINISHED_BY_PROJECT)
    counted = {str(project_id): int(count) for project_id, count in rows}
    counted[ALL_PROJECTS] = sum(counted.values())
    args: list[str | int] = []
    for field in counted.keys() | before.keys():
        args += [field, counted.get(field, 0), before.get(field, 0)]
    try:
        await redis.eval(_RESET, 1, BACKLOG_KEY, *args)
    except REDIS_ERRORS as exc:
        log.warning("backlogs not reset: Redis failed", extra={"error": repr(exc)})
        return {}
    return {"backlog_projects": len(counted) - 1, "backlog_unfinished": counted[ALL_PROJECTS]}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
