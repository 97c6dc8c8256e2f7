"""The web console: static files (an HTML shell, ES modules, one stylesheet) served at `/console`.

The pages call the REST API on the same origin and nothing else but S3's presigned URLs; no build
step, nothing fetched from elsewhere at run time (decision 0019)."""
