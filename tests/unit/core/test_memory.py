"""`core.memory.release_large_blocks`: a password hash's memory leaves the process with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Three argon2id hashes (19 MiB each) in each of two threads, then in the main thread: the growth
# of the process's RSS, in MiB, with or without the fixed threshold.
_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    import psutil
    from argon2 import PasswordHasher, Type
    from app.core.memory import release_large_blocks
    fixed = release_large_blocks() if sys.argv[1] == "fixed" else None
    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
    process = psutil.Process()
    before = process.memory_info().rss
    def hash_three():
        for _ in range(3):
            hasher.hash("correct horse battery staple")
    threads = [threading.Thread(target=hash_three) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hash_three()
    growth = (process.memory_info().rss - before) / 2**20
    print(json.dumps({"fixed": fixed, "growth_mib": growth}))
    """
)


def _growth(mode: str) -> dict[str, float | bool | None]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, float | bool | None] = json.loads(done.stdout)
    return result


class TestReleaseLargeBlocks:
    def test_hashing_threads_keep_no_hash_memory(self) -> None:
        result = _growth("fixed")

        assert result["fixed"] is True  # glibc: the suite's platforms
        assert result["growth_mib"] is not None
        assert float(result["growth_mib"]) < 10  # one hash is 19 MiB

    def test_without_it_each_hashing_thread_keeps_a_hash(self) -> None:
        # What the fix is for: glibc's sliding threshold keeps 19 MiB per hashing thread.
        result = _growth("default")

        assert float(result["growth_mib"] or 0) > 30
