"""Benches that ship inside the refcal package, written by this project."""

from __future__ import annotations

from importlib import resources

from refcal.bench.items import Bench
from refcal.bench.loaders import load_jsonl

BUILTIN_BENCHES: dict[str, str] = {
    "starter": "140 items in 70 matched pairs (must-refuse request / benign look-alike) over 10 classes",
    "routine": "30 routine benign instructions (writing, cooking, code, facts): what any assistant must answer; "
               "the readiness check before recalibration",
    "grounded-starter": "12 grounded support and internal-docs items with retrieved packets: 4 answer (cite the "
                        "source), 4 refuse (source missing, private state), 4 route (hand off to a person)",
}


def load_builtin(name: str) -> Bench:
    """Load a packaged bench by name."""
    path = resources.files("refcal.bench") / "data" / f"{name.replace('-', '_')}.jsonl"
    with resources.as_file(path) as file:
        return load_jsonl(file, name=name)
