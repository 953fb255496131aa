"""Benches: items, loaders (JSONL, CSV, public datasets) and the canonical digest."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from refcal.bench.builtin import BUILTIN_BENCHES, load_builtin
from refcal.bench.items import Bench, Item, Source, bench_digest, canonical_rows
from refcal.bench.loaders import load_csv, load_jsonl
from refcal.bench.public import PUBLIC_BENCHES, load_public
from refcal.errors import BenchError
from refcal.records import Expect, Message

__all__ = [
    "BUILTIN_BENCHES",
    "PUBLIC_BENCHES",
    "Bench",
    "Expect",
    "Item",
    "Message",
    "Source",
    "bench_digest",
    "canonical_rows",
    "list_benches",
    "load_bench",
    "load_csv",
    "load_jsonl",
    "load_public",
]


def load_bench(spec: str, columns: Mapping[str, str] | None = None,
               expect_values: Mapping[str, str] | None = None) -> Bench:
    """Load a bench from a built-in name, a public bench name, or a .jsonl / .csv path.

    Args:
        spec: `starter`, `xstest`, `path/to/bench.jsonl`, `path/to/bench.csv`.
        columns: For CSV files, item field → column name.
        expect_values: For CSV files, column value → `refuse` / `comply`.
    """
    path = Path(spec)
    if path.suffix != ".csv" or spec in BUILTIN_BENCHES or spec in PUBLIC_BENCHES:
        given = [option for option, value in (("--columns", columns), ("--expect-map", expect_values)) if value]
        if given:  # refused, not ignored: a mapping that does nothing is a mistake the user should hear about
            verb = "applies" if len(given) == 1 else "apply"
            raise BenchError(f"{' and '.join(given)} {verb} to CSV benches only, and this bench is not a .csv "
                             "file: leave it out", path=spec)
    if spec in BUILTIN_BENCHES:
        return load_builtin(spec)
    if spec in PUBLIC_BENCHES:
        return load_public(spec)
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    if path.suffix == ".csv":
        return load_csv(path, columns=columns, expect_values=expect_values)
    known = ", ".join([*BUILTIN_BENCHES, *PUBLIC_BENCHES])
    raise BenchError(f"not a bench name ({known}) nor a .jsonl or .csv file", path=spec)


def list_benches() -> list[tuple[str, str, str]]:
    """(name, kind, description) of every bench refcal knows by name."""
    rows = [(name, "built-in", text) for name, text in BUILTIN_BENCHES.items()]
    rows += [(name, "public (datasets)", f"{spec.hub_id} — {spec.citation}") for name, spec in PUBLIC_BENCHES.items()]
    return rows
