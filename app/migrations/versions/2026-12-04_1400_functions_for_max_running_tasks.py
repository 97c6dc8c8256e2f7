"""functions for max_running_tasks

`taskgate_running_cap`: a project's `max_running_tasks` from its stored settings, as
`app.projects.settings.read_settings` reads them (a value it would refuse means the default).
`taskgate_lease_room`: how many of the tasks a lease statement asks for each project may start,
counted under a per-project advisory lock in a snapshot taken after the lock, so concurrent
leases never take a project over its cap; `taskgate_lease_key`: the project's lock keys (decision
0018).

Revision ID: 5b81e3f0c2d4
Revises: 3fe095dc5357
Create Date: 2026-12-04 14:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b81e3f0c2d4"
down_revision: str | Sequence[str] | None = "3fe095dc5357"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bounds of `RunningTasksLimit` (app/core/config.py); a test checks that both agree.
RUNNING_CAP = """
CREATE FUNCTION taskgate_running_cap(settings jsonb, fallback integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(settings -> 'max_running_tasks') = 'number'
        THEN (
            SELECT CASE
                WHEN n BETWEEN 1 AND 100000 AND n = trunc(n) THEN n::integer
                ELSE fallback
            END
            FROM (SELECT (settings ->> 'max_running_tasks')::numeric AS n) AS stored
        )
        ELSE fallback
    END
$$
"""

# Lanes: a lease far under its project's cap locks one of `lanes` keys of the project (its
# backend's), so such leases rarely wait for each other; it takes at most `reserve` tasks and
# leaves `reserve` to each other lane. A lease near the cap locks every lane, in order, and sees
# every lease before it. A statement that leases for several projects calls this in key order
# (`hashtextextended`, the lane in the low two bits): keys are always taken in ascending order.
# Each statement of a volatile function takes a fresh snapshot: the count after the lock sees
# every lease committed before it was granted (READ COMMITTED).
LEASE_ROOM = """
CREATE FUNCTION taskgate_lease_room(p_project uuid, p_wanted integer, p_default integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lanes CONSTANT integer := 4;
    reserve CONSTANT integer := 64;
    key CONSTANT bigint := taskgate_lease_key(p_project);
    cap integer;
    running integer;
BEGIN
    SELECT taskgate_running_cap(pr.settings, p_default) INTO cap
      FROM projects AS pr WHERE pr.id = p_project;
    cap := coalesce(cap, p_default);
    SELECT count(*) INTO running FROM (
        SELECT FROM tasks AS t WHERE t.project_id = p_project AND t.status = 'running' LIMIT cap
    ) AS r;
    IF running + (lanes - 1) * reserve + p_wanted <= cap THEN
        PERFORM pg_advisory_xact_lock(key + pg_backend_pid() % lanes);
        SELECT count(*) INTO running FROM (
            SELECT FROM tasks AS t WHERE t.project_id = p_project AND t.status = 'running' LIMIT cap
        ) AS r;
        RETURN least(p_wanted, reserve, greatest(cap - running - (lanes - 1) * reserve, 0));
    END IF;
    FOR lane IN 0 .. lanes - 1 LOOP
        PERFORM pg_advisory_xact_lock(key + lane);
    END LOOP;
    SELECT count(*) INTO running FROM (
        SELECT FROM tasks AS t WHERE t.project_id = p_project AND t.status = 'running' LIMIT cap
    ) AS r;
    RETURN least(p_wanted, greatest(cap - running, 0));
END
$$
"""

# A project's advisory lock keys: this and the three after it (the lanes).
LEASE_KEY = """
CREATE FUNCTION taskgate_lease_key(project uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('taskgate.lease:' || project::text, 0) & ~3::bigint
$$
"""


def upgrade() -> None:
    op.execute(RUNNING_CAP)
    op.execute(LEASE_KEY)
    op.execute(LEASE_ROOM)


def downgrade() -> None:
    op.execute("DROP FUNCTION taskgate_lease_room(uuid, integer, integer)")
    op.execute("DROP FUNCTION taskgate_lease_key(uuid)")
    op.execute("DROP FUNCTION taskgate_running_cap(jsonb, integer)")
