"""One process at a time per run: a second `--resume` of a run that is still being drilled would send the same
variants twice and die on the store's uniqueness check. The lock is an advisory `flock` on a small file beside
the store that holds the owner's pid; the kernel drops it when the owner dies (kill -9 included), so a stale
lock never blocks a later resume. Where `fcntl` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from refcal.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(store_path: Path, run_id: str) -> Path:
    return store_path.with_name(f".{store_path.name}.{run_id}.lock")


@contextlib.contextmanager
def run_lock(store_path: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock, or raise StoreError naming the process that holds it."""
    if fcntl is None:
        yield
        return
    path = lock_path(store_path, run_id)
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise StoreError(f"run {run_id} is being resumed or drilled by process {owner}; wait for it to finish "
                             "(or stop it) before resuming") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock; the file stays, empty of meaning, for the next holder
