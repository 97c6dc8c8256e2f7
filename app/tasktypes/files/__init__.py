"""Built-in task types that work on files: `file.checksum`, `image.thumbnail`, `csv.profile`,
`archive.zip`.

Every handler is sync (it runs in a thread), streams its inputs from S3 in 1 MiB reads and writes
outputs as multipart uploads, so a worker's memory stays flat whatever the file size. Inputs are
`FileRef`s of the task's project; outputs are new files of the project, returned as `file_id`.
"""

from __future__ import annotations

from app.files.storage import StorageError
from app.tasktypes.base import TaskType
from app.tasktypes.files.archive import ZipInput, archive_zip
from app.tasktypes.files.checksum import ChecksumInput, checksum
from app.tasktypes.files.csv_profile import CsvProfileInput, csv_profile
from app.tasktypes.files.thumbnail import ThumbnailInput, thumbnail

FILE_TYPES = (
    TaskType(
        name="file.checksum",
        description="SHA-256, MD5 and size of a file (`file_id`), streamed in constant memory.",
        input_model=ChecksumInput,
        handler=checksum,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="image.thumbnail",
        description="Scale an image (PNG, JPEG, GIF, WebP or BMP, at most 50 million pixels and "
        "256 MiB) to fit `width`/`height` into a new file of `format` (png, jpeg, webp); returns "
        "its `file_id`.",
        input_model=ThumbnailInput,
        handler=thumbnail,
        default_timeout_s=300,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="csv.profile",
        description="Profile a CSV file: rows, columns, a type per column, nulls, min/max/mean "
        "of numbers and the most frequent values, in one streaming pass.",
        input_model=CsvProfileInput,
        handler=csv_profile,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="archive.zip",
        description="Zip several files (`file_ids`) into one new file; returns its `file_id`.",
        input_model=ZipInput,
        handler=archive_zip,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
)
