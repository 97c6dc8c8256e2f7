"""sweep the objects of projects deleted before the sweep existed

Their `project.deleted` events outlive them (project_id NULL, the project's id as subject):
each project deleted so far gets its `deleted_projects` row, so the sweep empties its prefix too.

Revision ID: 3fe095dc5357
Revises: 3e64c2eb86b5
Create Date: 2026-12-03 10:01:01.712385+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3fe095dc5357"
down_revision: str | Sequence[str] | None = "3e64c2eb86b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        insert into deleted_projects (project_id, deleted_at, objects_deleted)
        select e.subject_id, min(e.at), 0
          from events e
         where e.kind = 'project.deleted'
           and e.project_id is null
           and e.subject_id is not null
           and not exists (select 1 from projects p where p.id = e.subject_id)
         group by e.subject_id
        on conflict (project_id) do nothing
        """
    )


def downgrade() -> None:
    # The rows are the sweep's work list: dropping them with the table (previous revision) is
    # enough; deleting them here would also drop those of projects deleted since.
    pass
