"""Benchmarks: speed targets are checked here, never by timed assertions in unit tests."""
