"""Frozen benches: a lock file records a bench's digest before any training run exists, and every drill
on that bench checks it again.

A lock (`LOCKS/NAME.lock.json`) holds the bench's name, how to load it again, its digest, item and class
counts, a digest per item (so a mismatch can name the items that changed, appeared or disappeared), when
it was frozen and a note. A bench that no longer matches its lock is refused — never re-frozen silently
under the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from refcal.bench.curveball import unwritten
from refcal.bench.items import Bench, canonical_rows
from refcal.clock import utc_now
from refcal.errors import BenchError, InputFileError
from refcal.files import canonical_json

LOCK_VERSION = 1
DEFAULT_LOCKS = Path("frozen")
LOCK_SUFFIX = ".lock.json"
FILE_SUFFIXES = (".jsonl", ".csv")


class BenchLock(BaseModel):
    """The frozen state of one bench."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lock_version: int = LOCK_VERSION
    name: str
    spec: str
    """How to load the bench again: a bench name, or a file path relative to the lock's folder."""
    load_options: dict[str, dict[str, str]] = {}
    """CSV column and expect mappings the bench was loaded with."""
    digest: str
    items: int
    class_counts: dict[str, dict[str, int]]
    item_digests: dict[str, str]
    """Item id → sha256 of the item's canonical JSON (first 16 hex digits)."""
    frozen_at: str
    note: str = ""


class Changes(BaseModel):
    """How a bench differs from its lock."""

    changed: list[str]
    added: list[str]
    removed: list[str]

    def describe(self, limit: int = 5) -> str:
        parts = []
        for kind, ids in (("changed", self.changed), ("added", self.added), ("removed", self.removed)):
            if ids:
                shown = ", ".join(repr(item_id) for item_id in ids[:limit])
                parts.append(f"{kind} {len(ids)} item{'s' if len(ids) > 1 else ''} ({shown}"
                             + (", …" if len(ids) > limit else "") + ")")
        return "; ".join(parts) or "no item differs, but the digest does (canonical form changed)"


def item_digests(bench: Bench) -> dict[str, str]:
    return {item.id: hashlib.sha256(canonical_json(canonical_rows([item]))).hexdigest()[:16] for item in bench.items}


def make_lock(bench: Bench, spec: str, note: str = "",
              load_options: dict[str, dict[str, str]] | None = None) -> BenchLock:
    """The lock of a bench whose items are all written (a scaffold's TODO placeholders cannot be frozen)."""
    todo = unwritten((item.id, item.prompt) for item in bench.items)
    if todo:
        raise BenchError(f"{len(todo)} items are still placeholders (e.g. {', '.join(todo[:3])}): write their "
                         "prompts before freezing", path=bench.origin or spec)
    counts = bench.class_counts()
    return BenchLock(name=bench.name, spec=spec, load_options=load_options or {}, digest=bench.digest,
                     items=len(bench.items), class_counts=counts, item_digests=item_digests(bench),
                     frozen_at=utc_now(), note=note)


def diff(old: Mapping[str, str], new: Mapping[str, str]) -> Changes:
    """Items changed, added and removed between two id → digest maps."""
    return Changes(changed=sorted(key for key in new.keys() & old.keys() if new[key] != old[key]),
                   added=sorted(new.keys() - old.keys()), removed=sorted(old.keys() - new.keys()))


def changes(lock: BenchLock, bench: Bench) -> Changes:
    return diff(lock.item_digests, item_digests(bench))


def spec_for_lock(spec: str, locks: Path) -> str:
    """A bench file is recorded relative to the lock folder (so a clone of the project verifies it); a bench
    name as it is."""
    if Path(spec).suffix not in FILE_SUFFIXES:
        return spec
    return os.path.relpath(Path(spec).resolve(), locks.resolve())


def spec_from_lock(lock: BenchLock, locks: Path) -> str:
    return str(locks / lock.spec) if Path(lock.spec).suffix in FILE_SUFFIXES else lock.spec


def lock_path(locks: Path, name: str) -> Path:
    return locks / f"{name}{LOCK_SUFFIX}"


def lock_file_digest(path: Path) -> str:
    """sha256 of the lock file's bytes: receipts carry it, so a lock edited later no longer matches."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def read_lock(path: Path) -> BenchLock:
    try:
        return BenchLock.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise InputFileError("no such lock file", path=str(path)) from None
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputFileError(f"not a bench lock: {first['msg']}", path=str(path), field=field) from None


def read_locks(locks: Path) -> list[tuple[Path, BenchLock]]:
    """Every lock in a folder (none if the folder does not exist)."""
    return [(path, read_lock(path)) for path in sorted(locks.glob(f"*{LOCK_SUFFIX}"))] if locks.is_dir() else []


def write_lock(lock: BenchLock, locks: Path) -> tuple[Path, bool]:
    """Write a new lock; (path, False) when an identical freeze exists. A different bench already frozen
    under the name is an error: a frozen bench is never replaced silently."""
    from refcal.files import write_atomic

    path = lock_path(locks, lock.name)
    if path.exists():
        existing = read_lock(path)
        if existing.digest == lock.digest:
            return path, False
        raise BenchError(f"bench '{lock.name}' is already frozen with digest {existing.digest[:19]}… "
                         f"(frozen at {existing.frozen_at}); the bench now differs: "
                         f"{diff(existing.item_digests, lock.item_digests).describe()}. Save the new version as a new "
                         "file (a bench file's name is its bench name) and freeze that.",
                         path=str(path))
    write_atomic(path, json.dumps(lock.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    return path, True


def check_frozen(bench: Bench, locks: Path) -> tuple[Path, BenchLock] | None:
    """The lock of a bench if it is frozen and unchanged; None if it is not frozen; BenchError naming
    what changed if it no longer matches its lock."""
    path = lock_path(locks, bench.name)
    if not path.exists():
        return None
    lock = read_lock(path)
    if lock.digest != bench.digest:
        raise BenchError(f"bench '{bench.name}' is frozen (digest {lock.digest[:19]}…, frozen at {lock.frozen_at}) "
                         f"but its items differ now: {changes(lock, bench).describe()}; refusing to drill it. "
                         "Restore the frozen items, or save the new version as a new file and freeze that.",
                         path=str(path))
    return path, lock
