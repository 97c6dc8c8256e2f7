"""taskgate: background work behind an authenticated REST API."""

__version__ = "0.1.0"
