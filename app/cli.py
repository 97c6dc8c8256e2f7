"""Command line: the servers (`taskgate api | worker | scheduler | migrate | dev`), operators'
commands on the database (`users`, `projects create`, `keys create`, `webhooks reseal`) and the
API's client (`tasks`, `files`, `webhooks list|deliveries`, over HTTP only: `app/client/`)."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from app import __version__
from app.auth import cli as operator_commands
from app.auth.cli import users
from app.files.cli import files
from app.projects.cli import keys, projects
from app.tasks.cli import tasks
from app.webhooks.cli import webhooks

cli = typer.Typer(
    name="taskgate",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
PROG_NAME = "taskgate"

REPO_ROOT = Path(__file__).resolve().parent.parent


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG_NAME} {__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Background work behind an authenticated REST API.

    Exit codes: 0 done, 1 the API answered with an error (or the task ended failed or canceled),
    2 a usage error, 3 the API could not be reached, 4 the task was unfinished at --timeout.
    """


# The server's modules are imported by the commands that run a server: the API client's commands
# start without settings, SQLAlchemy or FastAPI.


def _configure_logging() -> None:
    from app.core.config import get_settings
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: settings).")] = None,
    workers: Annotated[int | None, typer.Option(help="Uvicorn worker processes.")] = None,
) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from app.core.config import get_settings
    from app.core.multiprocess import share_metrics_dir

    settings = get_settings()
    _configure_logging()
    # Every uvicorn process and the workers of this host write their metrics there.
    share_metrics_dir(settings.metrics, fresh=True)
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=host or settings.api.host,
        port=port or settings.api.port,
        workers=workers or settings.api.workers,
        timeout_worker_healthcheck=settings.api.worker_healthcheck_s,
        log_config=None,
        access_log=False,  # the app writes each request's line (`taskgate.access`)
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@cli.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Jobs at once: prefork processes, or threads of the one process."),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(help="prefork (CPU-bound types), threads (attempts overlap) or solo."),
    ] = None,
    queues: Annotated[
        str,
        typer.Option(
            help="Queues, highest priority first; `webhooks` holds webhook deliveries "
            "(a worker of its own: --queues webhooks)."
        ),
    ] = "high,webhooks,default,low",
    hostname: Annotated[str | None, typer.Option(help="Worker node name (name@host).")] = None,
) -> None:
    """Run a Celery worker on the priority queues (`TASKGATE_WORKER__POOL`, `…__CONCURRENCY`)."""
    from app.core.config import get_settings
    from app.core.multiprocess import share_metrics_dir

    # Before anything imports prometheus_client: its pool processes inherit the directory.
    share_metrics_dir(get_settings().metrics)
    from app import wiring
    from app.worker.celery_app import celery_app

    # The job processes read these too (their database pool is sized by them).
    if pool is not None:
        os.environ["TASKGATE_WORKER__POOL"] = pool
    if concurrency is not None:
        os.environ["TASKGATE_WORKER__CONCURRENCY"] = str(concurrency)
    get_settings.cache_clear()
    settings = get_settings()
    _configure_logging()
    if settings.metrics.worker_port is not None:  # a host without an API process to scrape
        from app.core.exposition import serve_host_metrics

        serve_host_metrics(settings.metrics.worker_host, settings.metrics.worker_port)
    argv = [
        "worker",
        f"--concurrency={settings.worker.concurrency}",
        f"--queues={queues}",
        f"--loglevel={settings.log_level}",
        f"--pool={settings.worker.pool}",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    wiring.wire_workers()
    celery_app().worker_main(argv)


@cli.command()
def scheduler() -> None:
    """Run the scheduler: dispatches due and lost tasks, promotes retries, reaps expired leases."""
    import asyncio

    from app.core.config import get_settings
    from app.core.multiprocess import share_metrics_dir

    share_metrics_dir(get_settings().metrics)  # its database pool's figures
    from app.worker.scheduler import run_scheduler

    _configure_logging()
    asyncio.run(run_scheduler(get_settings()))


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (`alembic upgrade head`)."""
    from alembic import command

    from app.migrations import alembic_config

    _configure_logging()
    command.upgrade(alembic_config(), revision)


@cli.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="Where engines keep their data.")] = Path(
        ".taskgate"
    ),
    host: Annotated[str, typer.Option(help="API address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    api_workers: Annotated[
        int | None, typer.Option(help="Uvicorn worker processes (default: one per core).")
    ] = None,
    worker_processes: Annotated[
        int | None,
        typer.Option(help="`taskgate worker` processes (default: one per core)."),
    ] = None,
) -> None:
    """Start the whole platform on embedded engines: PostgreSQL, Valkey, S3, API, worker, scheduler."""
    from app.devstack.dev import run_dev

    _configure_logging()
    cores = os.cpu_count() or 1
    raise typer.Exit(
        run_dev(
            data_dir=data_dir.resolve(),
            host=host,
            port=port,
            api_workers=api_workers or cores,
            worker_processes=worker_processes or cores,
        )
    )


@cli.command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to complete in.")],
) -> None:
    """Print the shell's completion script, e.g. for ~/.bashrc: eval "$(taskgate completion bash)"."""
    from typer._completion_shared import get_completion_script  # what --show-completion prints

    complete_var = f"_{PROG_NAME.upper()}_COMPLETE"
    typer.echo(get_completion_script(prog_name=PROG_NAME, complete_var=complete_var, shell=shell))


cli.add_typer(users, name="users")
cli.add_typer(projects, name="projects")
cli.add_typer(keys, name="keys")
cli.add_typer(tasks, name="tasks")
cli.add_typer(files, name="files")
cli.add_typer(webhooks, name="webhooks")


def _subscribe_all() -> None:
    from app import wiring

    wiring.subscribe_all()  # the events operators' commands record get their webhook deliveries


operator_commands.before_transaction.append(_subscribe_all)


def main() -> None:
    cli(prog_name=PROG_NAME)


if __name__ == "__main__":
    main()
