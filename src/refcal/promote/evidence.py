"""Promotion's I/O: reading candidate receipts as evidence, and writing the decision.

A receipt that is missing or does not parse is evidence of nothing, and says so. When the run database
still holds the run, the receipt's counts and metrics are rebuilt from the committed attempts and must
match: a receipt edited and re-sealed by hand still fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from refcal.clock import utc_now
from refcal.errors import StoreError
from refcal.promote.gates import Evidence, Outcome
from refcal.receipts import Receipt, build_receipt
from refcal.store.runs import Store

RECEIPT = "receipt.json"


def read_evidence(reference: str, store_path: Path | None = None) -> Evidence:
    """A receipt file or a run folder holding one, checked against the store when it has the run."""
    path = Path(reference)
    if path.is_dir():
        path = path / RECEIPT
    if not path.is_file():
        return Evidence(path=str(path), receipt=None, problem="no such receipt")
    try:
        receipt = Receipt.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return Evidence(path=str(path), receipt=None, problem=f"not a receipt: {first['msg']} (field '{field}')")
    mismatch = _against_store(receipt, store_path) if store_path is not None else None
    return Evidence(path=str(path), receipt=None if mismatch else receipt, problem=mismatch)


def _against_store(receipt: Receipt, store_path: Path) -> str | None:
    if not store_path.is_file():
        return None
    with Store(store_path) as store:
        try:
            run = store.get_run(receipt.run_id)
        except StoreError:  # not in this store: the receipt's own digest is all there is to check
            return None
        rebuilt = build_receipt(run, list(store.attempts(run.run_id)), labels=store.labels([run.run_id]))
    if rebuilt.bench.digest != receipt.bench.digest or rebuilt.counts != receipt.counts \
            or rebuilt.metrics != receipt.metrics:
        return f"its figures differ from run {receipt.run_id} in {store_path} (edited after it was written)"
    return None


def promotion_record(promoted: bool, gates: Path, outcomes: Sequence[Outcome], candidates: Sequence[Evidence],
                     baseline: Evidence | None) -> str:
    """The decision as JSON: what was claimed, what was found, and which receipts (by digest) it rests on."""
    def receipt_ref(evidence: Evidence) -> dict[str, str | None]:
        receipt = evidence.receipt
        return {"path": evidence.path, "run_id": receipt.run_id if receipt else None,
                "digest": receipt.digest if receipt else None, "problem": evidence.problem}
    return json.dumps({
        "decision": "PROMOTED" if promoted else "REJECTED", "decided_at": utc_now(), "gates": str(gates),
        "candidates": [receipt_ref(evidence) for evidence in candidates],
        "baseline": receipt_ref(baseline) if baseline else None,
        "outcomes": [{"line": outcome.gate.line, "claim": outcome.gate.claim, "bench": outcome.gate.bench,
                      "passed": outcome.passed, "figures": outcome.figures, "problems": outcome.problems,
                      "underpowered": outcome.underpowered}
                     for outcome in outcomes],
    }, indent=2, ensure_ascii=False) + "\n"
