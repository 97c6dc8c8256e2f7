"""`taskgate tasks submit`: submit a task over the HTTP API and follow it until it ends."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

tasks = typer.Typer(help="Submit and follow tasks through the HTTP API.", no_args_is_help=True)

# Each long-poll holds this long at most, so progress is redrawn at least this often.
POLL_WAIT_S = 2
TERMINAL = {"succeeded", "failed", "canceled"}


def _parse_input(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object")
    return value


def _fail_on_error(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        problem = response.json()
        detail = f"{problem.get('title')}: {problem.get('detail')}"
    except ValueError:
        detail = response.text[:500]
    typer.echo(f"error: HTTP {response.status_code} {detail}", err=True)
    raise typer.Exit(2)


def _follow(client: httpx.Client, task: dict[str, Any], deadline: float) -> dict[str, Any]:
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(task["status"], total=1.0)
        while task["status"] not in TERMINAL and time.monotonic() < deadline:
            wait = max(1, min(POLL_WAIT_S, int(deadline - time.monotonic())))
            task = _fail_on_error(
                client.get(f"/v1/tasks/{task['id']}", params={"wait": wait}, timeout=wait + 10)
            )
            message = task.get("progress_message") or ""
            attempt = f"attempt {task['attempt']}/{task['max_attempts']}"
            progress.update(
                bar,
                completed=task.get("progress") or 0.0,
                description=f"{task['type']} {task['status']} ({attempt}) {message}".rstrip(),
            )
    return task


@tasks.command("submit")
def submit(
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Task type, e.g. `echo`.")],
    input_: Annotated[
        str, typer.Option("--input", help="The task's input as a JSON object.")
    ] = "{}",
    project: Annotated[str, typer.Option(envvar="TASKGATE_PROJECT", help="Project id.")] = "",
    api_key: Annotated[
        str, typer.Option(envvar="TASKGATE_API_KEY", help="API key (`tg_…`) or access token.")
    ] = "",
    url: Annotated[str, typer.Option(envvar="TASKGATE_URL", help="API base URL.")] = (
        "http://127.0.0.1:8000"
    ),
    priority: Annotated[str, typer.Option(help="high, default or low.")] = "default",
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the task until it ends.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Give up following after this many seconds.")
    ] = 3600,
) -> None:
    """Submit a task. With --wait, show its status and progress live, print its result as JSON
    and exit 0 if it succeeded, 1 if it failed or was canceled (3 if it was still running)."""
    if not project or not api_key:
        typer.echo(
            "error: --project and --api-key (or TASKGATE_PROJECT/TASKGATE_API_KEY) are required",
            err=True,
        )
        raise typer.Exit(2)
    body = {"type": type_, "input": _parse_input(input_), "priority": priority}
    headers = {"Authorization": f"Bearer {api_key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        try:
            task = _fail_on_error(client.post(f"/v1/projects/{project}/tasks", json=body))
            typer.echo(f"task {task['id']} {task['status']}", err=True)
            if not wait:
                sys.stdout.write(json.dumps(task) + "\n")
                return
            task = _follow(client, task, time.monotonic() + timeout)
        except httpx.HTTPError as exc:
            typer.echo(f"error: cannot reach {url}: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"task {task['id']} {task['status']}", err=True)
    if task["status"] == "succeeded":
        sys.stdout.write(json.dumps(task["result"]) + "\n")
        return
    if task["status"] in TERMINAL:
        sys.stdout.write(json.dumps(task["error"]) + "\n")
        raise typer.Exit(1)
    raise typer.Exit(3)
