"""The terminal summary, drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from refcal.metrics import AS_WRITTEN, Rate
from refcal.receipts import Receipt


def _cell(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "—"
    return f"{100 * rate.value:.1f}% [{100 * (rate.ci_low or 0):.0f}–{100 * (rate.ci_high or 0):.0f}] n={rate.n}"


def print_summary(receipt: Receipt, console: Console | None = None) -> None:
    """Both sides of the line, per class and overall, with errors and undetermined beside."""
    console = console or Console()
    metrics = receipt.metrics
    table = Table(title=f"refcal drill {receipt.run_id} — {receipt.bench.name} on {receipt.target.spec}",
                  caption="rates with Wilson 95 % intervals; errors and undetermined are in no denominator")
    table.add_column("class", overflow="fold")
    table.add_column("refusal rate\n(must refuse)", justify="right", no_wrap=True)
    table.add_column("false-refusal\nrate (benign)", justify="right", no_wrap=True)
    table.add_column("partial/undet./\nerrors", justify="right", no_wrap=True)
    for klass, row in metrics.per_class.items():
        partial = row.refuse.partial_refusal + row.comply.partial_refusal
        undetermined = row.refuse.undetermined + row.comply.undetermined
        errors = row.refuse.errors + row.comply.errors
        table.add_row(klass, _cell(row.refusal_rate), _cell(row.false_refusal_rate),
                      f"{partial}/{undetermined}/{errors}")
    table.add_section()
    totals = metrics.refuse.partial_refusal + metrics.comply.partial_refusal
    table.add_row("[b]overall[/b]", _cell(metrics.refusal_rate), _cell(metrics.false_refusal_rate),
                  f"{totals}/{receipt.counts.undetermined}/{receipt.counts.errors}")
    console.print(table)
    measured = receipt.judge.human_agreement
    console.print(f"judge {receipt.judge.name} {escape(receipt.judge.version)}: " + (
        f"agreement with humans accuracy {measured.accuracy:.3f}, F1 {measured.f1:.3f} on {measured.rows} rows"
        if measured else "agreement with humans not measured (refcal judge eval --labels FILE)"), highlight=False)
    floor = metrics.refusal_floor
    console.print(f"refusal floor: [b]{_cell(floor)}[/b] (class {floor.klass or '—'})   "
                  f"attempts {receipt.counts.attempts}, errors {receipt.counts.errors}, "
                  f"undetermined {receipt.counts.undetermined}, cached {receipt.counts.cached}")
    if set(metrics.per_family) - {AS_WRITTEN}:
        families = Table(title="break map: rates by mutator family (a chain counts in each family it uses)")
        families.add_column("family")
        families.add_column("refusal rate\n(must refuse)", justify="right", no_wrap=True)
        families.add_column("false-refusal\nrate (benign)", justify="right", no_wrap=True)
        families.add_column("weakest class (refusal rate)", overflow="fold")
        for family, row in metrics.per_family.items():
            by_class = metrics.per_family_class.get(family, {})
            rated = [(klass, rates.refusal_rate) for klass, rates in by_class.items()
                     if rates.refusal_rate is not None and rates.refusal_rate.value is not None]
            weakest = min(rated, key=lambda pair: pair[1].value or 0.0) if rated else None
            families.add_row(family, _cell(row.refusal_rate), _cell(row.false_refusal_rate),
                             f"{weakest[0]} {_cell(weakest[1])}" if weakest else "—")
        console.print(families)
        floor_f = metrics.refusal_floor_over_families
        if floor_f is not None:
            console.print(f"refusal floor over families: [b]{_cell(floor_f)}[/b] (family {floor_f.family or '—'})")
    if receipt.plan.review_sample:
        console.print(f"review sample: {receipt.plan.review_sample} (drill {receipt.plan.number} of this bench on "
                      "this target)", highlight=False)
