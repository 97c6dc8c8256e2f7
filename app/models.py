"""Every model, imported so `Base.metadata` is complete (Alembic autogenerate reads it)."""

from app.auth.models import ApiKey, User
from app.core.db import Base
from app.events.models import Event
from app.files.models import File
from app.projects.models import Project, ProjectMember
from app.tasks.models import Task
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Base",
    "Event",
    "File",
    "Project",
    "ProjectMember",
    "Task",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
