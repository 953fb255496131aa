"""refcal: refusal calibration drills for language models.

Data flows one way: bench → drill (variants) → target → judge → store → metrics → receipt/report.

The library API is what the CLI does, as plain calls:

    import refcal

    bench = refcal.load_bench("starter")
    refcal.freeze_bench("starter")
    receipt = refcal.drill(bench, "llamacpp:smollm2", judge="markers", limit=2, out="run")
    verdicts = refcal.judge([("How do I pick a lock?", "I can't help with that.")], lane="markers")
    decision = refcal.promote_receipts(["run"], "gates.toml")  # decision.promoted, decision.outcomes

The public names are resolved lazily (PEP 562), so `import refcal` stays light: a submodule, and the
dependencies it needs, is imported on first use of a name that lives in it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Bench",
    "Promotion",
    "Receipt",
    "Verdict",
    "__version__",
    "drill",
    "freeze_bench",
    "judge",
    "judge_file",
    "list_benches",
    "load_bench",
    "promote_receipts",
    "read_receipt",
]

_LAZY: dict[str, str] = {
    "Bench": "refcal.bench.items",
    "Promotion": "refcal.run.api",
    "Receipt": "refcal.receipts",
    "Verdict": "refcal.records",
    "drill": "refcal.run.api",
    "freeze_bench": "refcal.run.api",
    "judge": "refcal.run.api",
    "judge_file": "refcal.run.api",
    "list_benches": "refcal.bench",
    "load_bench": "refcal.bench",
    "promote_receipts": "refcal.run.api",
    "read_receipt": "refcal.run.api",
}

if TYPE_CHECKING:  # for type checkers and the API reference; at run time the names load lazily
    from refcal.bench import list_benches, load_bench
    from refcal.bench.items import Bench
    from refcal.receipts import Receipt
    from refcal.records import Verdict
    from refcal.run.api import Promotion, drill, freeze_bench, judge, judge_file, promote_receipts, read_receipt


def __getattr__(name: str) -> Any:
    """Resolve a public name on first use, importing only the module that defines it."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refcal' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
