"""Presigned uploads land on a staging key; the call that makes the file `ready` (`complete`, or
the first task that uses the file) copies them to the file's own key on the S3 side.

A presigned PUT URL works for its whole lifetime (up to 5 minutes), whatever happens to the file
meanwhile. Signed for the staging key, a PUT after the file is ready writes only there: the
ready file's bytes, and so its recorded sha256, can no longer be replaced. Staging keys live
under the project's prefix (`projects/<id>/staging/<file id>`) and are deleted with the file.
"""

from __future__ import annotations

from app.files.models import File
from app.files.storage import ObjectInfo, ObjectMissing, Storage, object_key

STAGING = "staging"


def staging_key(file: File) -> str:
    """Where the presigned PUT of `file` writes."""
    return object_key(file.project_id, STAGING, str(file.id))


def keys_of(file: File) -> list[str]:
    """Every object `file` may have: its own, and a staging one left by a PUT after `complete`."""
    return [file.key, staging_key(file)]


def promote(storage: Storage, file: File) -> ObjectInfo | None:
    """Move the uploaded bytes of a pending `file` to its key (blocking: call it in a thread):
    what arrived there, or None when nothing did. An upload of the wrong size is not moved (the
    caller refuses it). Safe to run twice at once: the second finds the bytes moved."""
    staged_key = staging_key(file)
    staged = storage.head(staged_key)
    if staged is None:
        # Moved by a concurrent call already, or uploaded before uploads were staged.
        return storage.head(file.key)
    if staged.size != file.size:
        return staged
    try:
        storage.copy(staged_key, file.key)
    except ObjectMissing:  # a concurrent call moved it between the head and the copy
        return storage.head(file.key)
    storage.delete(staged_key)
    return staged
