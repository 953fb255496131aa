"""Training corpora: reading them, and checking them against every frozen bench for contamination.

`check_corpus` is the one call a training command needs: it reads the corpus files, loads the frozen benches
(refusing one that no longer matches its lock), and runs `find_contamination` with the judges' embedding
model when it is installed. The checks themselves live in `contamination` and touch no file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from refcal.bench import load_bench
from refcal.bench.freeze import (
    DEFAULT_LOCKS,
    FILE_SUFFIXES,
    LOCK_SUFFIX,
    BenchLock,
    changes,
    lock_path,
    read_lock,
    read_locks,
    spec_from_lock,
)
from refcal.bench.items import Bench
from refcal.corpus.contamination import (
    KINDS,
    BenchSummary,
    ContaminationOptions,
    ContaminationReport,
    Embed,
    Hit,
    Kind,
    Progress,
    find_contamination,
    normalise,
)
from refcal.corpus.reader import CorpusText, read_corpora, read_corpus
from refcal.errors import BenchError, MissingExtraError

__all__ = [
    "KINDS",
    "BenchSummary",
    "ContaminationOptions",
    "ContaminationReport",
    "CorpusText",
    "Hit",
    "Kind",
    "check_corpus",
    "find_contamination",
    "frozen_benches",
    "normalise",
    "read_corpora",
    "read_corpus",
    "sentence_embedding",
]


def check_corpus(paths: Sequence[str | Path], against: Sequence[str] | None = None, locks: Path = DEFAULT_LOCKS,
                 options: ContaminationOptions | None = None, progress: Progress | None = None
                 ) -> ContaminationReport:
    """Check training corpus files against frozen benches.

    Args:
        paths: JSONL corpus files (chat, prompt/completion or text rows).
        against: Bench names frozen in `locks`, or lock file paths; None for every lock in `locks`.
        locks: The folder of bench locks.
        options: Thresholds and switches; with `semantic="on"` a missing embedding model is an error.
        progress: Told how the semantic layer advances.

    Raises:
        InputFileError: A corpus line is malformed, or a lock cannot be read.
        BenchError: No bench to check against, or a frozen bench no longer matches its lock.
        MissingExtraError: `semantic="on"` without torch, transformers and the embedding model, or a frozen
            public bench without the `datasets` extra.

    Example:
        >>> report = check_corpus(["train.jsonl"])
        >>> if report.hits: raise SystemExit(f"{len(report.hits)} rows meet a frozen bench")
    """
    options = options or ContaminationOptions()
    benches = [bench for _, bench in frozen_benches(against, locks)]
    embed, reason = sentence_embedding(options)  # before the corpus is read: `semantic="on"` fails fast
    corpus = read_corpora(paths)
    return find_contamination(corpus, benches, options, embed, no_embed_reason=reason, progress=progress)


def frozen_benches(against: Sequence[str] | None, locks: Path = DEFAULT_LOCKS) -> list[tuple[BenchLock, Bench]]:
    """The benches to check against, each loaded and compared with its lock: names of benches frozen in `locks`,
    lock file paths, or (None) every lock in `locks`."""
    if against:
        found = [_lock(name, locks) for name in against]
    else:
        found = read_locks(locks)
        if not found:
            raise BenchError(f"no frozen benches in {locks} to check against (refcal bench freeze NAME first)",
                             path=str(locks))
    unique = {(lock.name, lock.digest): (path, lock) for path, lock in found}  # a bench named twice counts once
    return [(lock, _load_frozen(lock, path.parent)) for path, lock in unique.values()]


def sentence_embedding(options: ContaminationOptions) -> tuple[Embed | None, str]:
    """The judges' embedding model as an `Embed`, or None and why (an error when the layer is `on`)."""
    if options.semantic == "off":
        return None, "turned off"
    try:
        from refcal.judges.embedding import SentenceEmbedder

        SentenceEmbedder.check()
    except (ImportError, MissingExtraError) as error:
        reason = f"the embedding model cannot run: {error}"
        if options.semantic == "on":
            raise MissingExtraError(f"the semantic layer was asked for, but {reason}") from None
        return None, reason
    return SentenceEmbedder().embed, ""


def _lock(name: str, locks: Path) -> tuple[Path, BenchLock]:
    """A lock file path as given; a bench name (or a bench file, named after its file's stem) in `locks`."""
    if name.endswith(LOCK_SUFFIX):
        path = Path(name)
    else:
        path = lock_path(locks, Path(name).stem if Path(name).suffix in FILE_SUFFIXES else name)
    if not path.is_file():
        raise BenchError(f"bench '{name}' is not frozen in {locks} (refcal bench freeze {name}, or give a "
                         f"{LOCK_SUFFIX} path)", path=str(path))
    return path, read_lock(path)


def _load_frozen(lock: BenchLock, locks: Path) -> Bench:
    bench = load_bench(spec_from_lock(lock, locks), lock.load_options.get("columns"),
                       lock.load_options.get("expect_map"))
    if bench.digest != lock.digest:
        raise BenchError(f"bench '{lock.name}' no longer matches its lock (frozen at {lock.frozen_at}): "
                         f"{changes(lock, bench).describe()}; a contamination check against other items than "
                         "the frozen ones would mean nothing", path=str(lock_path(locks, lock.name)))
    return bench
