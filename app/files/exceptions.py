"""File errors a client can act on."""

from __future__ import annotations

from app.core.errors import AppError, Conflict, NotFound, PayloadTooLarge, ServiceUnavailable


class FileNotFound(NotFound):
    """Also what a caller outside the file's project gets."""

    type, title = "file-not-found", "File not found"


class FileTooLarge(PayloadTooLarge):
    type, title = "file-too-large", "File too large"


class FileNotUploaded(Conflict):
    type, title = "file-not-uploaded", "The file's bytes have not been uploaded"


class InvalidUpload(AppError):
    status, type, title = 422, "invalid-upload", "The upload is not a valid multipart form"


class UnsupportedUploadType(AppError):
    status, type, title = 415, "unsupported-media-type", "Send the file as multipart/form-data"


class StorageUnavailable(ServiceUnavailable):
    type, title = "storage-unavailable", "File storage is unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})
