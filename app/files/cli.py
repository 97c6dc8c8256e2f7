"""`taskgate files upload|download|list`: files through the HTTP API and presigned URLs."""

from __future__ import annotations

import enum
import hashlib
import mimetypes
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from app.client.errors import CommandError
from app.client.http import ApiClient
from app.client.options import (
    AllOption,
    ApiKeyOption,
    CursorOption,
    LimitOption,
    OutputOption,
    ProfileOption,
    ProjectOption,
    UrlOption,
    connect,
)
from app.client.output import Column, Output, field, show_object, show_page, stderr_console

files = typer.Typer(
    help="Upload, download and list files through the HTTP API.", no_args_is_help=True
)

CHUNK_BYTES = 256 * 1024
# Bytes move straight between this machine and S3; allow a slow link that much longer.
TRANSFER_TIMEOUT_S = 300.0


class FileStatus(enum.StrEnum):
    pending = "pending"
    ready = "ready"


FILE_COLUMNS = (
    field("id"),
    field("filename"),
    field("type", "content_type"),
    field("size"),
    field("status"),
    Column("task", lambda file: file.get("task_id")),
    field("created", "created_at"),
)


def _progress() -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    return Progress(*columns, console=stderr_console(), transient=True)


def _chunks(source: IO[bytes], progress: Progress, bar: TaskID) -> Iterator[bytes]:
    while chunk := source.read(CHUNK_BYTES):
        progress.advance(bar, len(chunk))
        yield chunk


@files.command("upload")
def upload(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to send.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Its name in taskgate (default: the file's).")
    ] = None,
    content_type: Annotated[
        str | None, typer.Option(help="Its media type (default: guessed from the name).")
    ] = None,
    output: OutputOption = Output.table,
    project: ProjectOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Upload a file straight to S3 (a presigned PUT, then `complete`); shows the ready file.
    Tasks refer to it by its id."""
    filename = name or path.name
    media_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    size = path.stat().st_size
    with connect(url=url, api_key=api_key, profile=profile, project=project) as api:
        announced = api.post(
            f"/v1/projects/{api.connection.require_project()}/files",
            {"filename": filename, "content_type": media_type, "size": size},
        )
        with path.open("rb") as source, _progress() as progress:
            bar = progress.add_task(f"upload {filename}", total=size)
            api.put_object(
                announced["upload_url"],
                headers=announced["headers"],
                chunks=_chunks(source, progress, bar),
                timeout=TRANSFER_TIMEOUT_S,
            )
        file = api.post(f"/v1/files/{announced['id']}/complete")
    typer.echo(f"file {file['id']} {file['status']}", err=True)
    show_object(file, output)


@files.command("download")
def download(
    file_id: Annotated[uuid.UUID, typer.Argument(metavar="FILE_ID", help="The file's id.")],
    destination: Annotated[
        str, typer.Argument(metavar="DEST", help="Where to write it; `-` for stdout.")
    ],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Download a ready file from S3 (its presigned link), checking its sha256 when known."""
    target = None if destination == "-" else Path(destination)
    if target is not None and target.is_dir():
        raise typer.BadParameter("is a directory; name the file", param_hint="DEST")
    with connect(url=url, api_key=api_key, profile=profile) as api:
        file = api.get(f"/v1/files/{file_id}")
        if not file.get("download_url"):
            raise CommandError(f"file {file_id} is {file['status']}: nothing to download yet")
        if target is None:
            _copy(api, file, sys.stdout.buffer)
        else:
            try:
                with target.open("wb") as sink:
                    _copy(api, file, sink)
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
            except BaseException:
                target.unlink(missing_ok=True)  # never leave part of a file behind
                raise
    typer.echo(f"file {file['id']} {file['size']} bytes", err=True)


def _copy(api: ApiClient, file: dict[str, Any], sink: IO[bytes]) -> None:
    digest = hashlib.sha256()
    with (
        api.get_object(file["download_url"], timeout=TRANSFER_TIMEOUT_S) as response,
        _progress() as progress,
    ):
        bar = progress.add_task(f"download {file['filename']}", total=file["size"])
        for chunk in response.iter_bytes(CHUNK_BYTES):
            sink.write(chunk)
            digest.update(chunk)
            progress.advance(bar, len(chunk))
    sink.flush()
    if file.get("sha256") and digest.hexdigest() != file["sha256"]:
        raise CommandError(f"the download's sha256 is {digest.hexdigest()}, not {file['sha256']}")


@files.command("list")
def list_files(
    status: Annotated[FileStatus | None, typer.Option(help="Only files in this status.")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_: AllOption = False,
    output: OutputOption = Output.table,
    project: ProjectOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """List the project's files (uploads and task outputs), newest first."""
    with connect(url=url, api_key=api_key, profile=profile, project=project) as api:
        page = api.page(
            f"/v1/projects/{api.connection.require_project()}/files",
            limit=limit,
            cursor=cursor,
            follow=all_,
            status=status,
        )
    show_page(page, output, FILE_COLUMNS)
