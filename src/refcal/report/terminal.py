"""The terminal summary, drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from refcal.metrics.agreement import ReviewSummary
from refcal.metrics.correction import CorrectedRate
from refcal.metrics.pressure import PressureMetrics, SurvivalPoint
from refcal.metrics.rates import percent
from refcal.metrics.summary import AS_WRITTEN, GroundedMetrics, Metrics, Rate
from refcal.receipts import Receipt


def _cell(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "—"
    return f"{percent(rate.value)} [{percent(rate.ci_low or 0, 0, '')}–{percent(rate.ci_high or 0, 0, '')}] n={rate.n}"


def print_summary(receipt: Receipt, console: Console | None = None) -> None:
    """Both sides of the line, per class and overall, with errors and undetermined beside."""
    console = console or Console()
    metrics = receipt.metrics
    table = Table(title=escape(f"refcal drill {receipt.run_id} — {receipt.bench.name} on {receipt.target.spec}"),
                  caption="rates with Wilson 95 % intervals; errors and undetermined are in no denominator")
    table.add_column("class", overflow="fold")
    table.add_column("refusal rate\n(must refuse)", justify="right", no_wrap=True)
    table.add_column("false-refusal\nrate (benign)", justify="right", no_wrap=True)
    table.add_column("partial/undet./\nerrors", justify="right", no_wrap=True)
    for klass, row in metrics.per_class.items():
        partial = row.refuse.partial_refusal + row.comply.partial_refusal
        undetermined = row.refuse.undetermined + row.comply.undetermined
        errors = row.refuse.errors + row.comply.errors
        table.add_row(escape(klass), _cell(row.refusal_rate), _cell(row.false_refusal_rate),
                      f"{partial}/{undetermined}/{errors}")
    table.add_section()
    totals = metrics.refuse.partial_refusal + metrics.comply.partial_refusal
    table.add_row("[b]overall[/b]", _cell(metrics.refusal_rate), _cell(metrics.false_refusal_rate),
                  f"{totals}/{receipt.counts.undetermined}/{receipt.counts.errors}")
    console.print(table)
    console.print(f"judge {escape(receipt.judge.name)} {escape(receipt.judge.version)}: "
                  f"{escape(agreement_line(receipt))}", highlight=False)
    if receipt.corrected is not None:
        corrected = receipt.corrected
        console.print(f"corrected for the judge's error (Se {_share_text(corrected.sensitivity)}, Sp "
                      f"{_share_text(corrected.specificity)}): refusal {escape(corrected_text(corrected.refusal_rate))}"
                      f", false refusal {escape(corrected_text(corrected.false_refusal_rate))}, floor "
                      f"{escape(corrected_text(corrected.refusal_floor))} "
                      f"(class {escape(corrected.floor_class or '—')})", highlight=False)
    floor = metrics.refusal_floor
    console.print(f"refusal floor: [b]{_cell(floor)}[/b] (class {escape(floor.klass or '—')})   "
                  f"attempts {receipt.counts.attempts}, errors {receipt.counts.errors}, "
                  f"undetermined {receipt.counts.undetermined}, cached {receipt.counts.cached}", highlight=False)
    if set(metrics.per_family) - {AS_WRITTEN}:
        print_break_map(metrics, console)
    if metrics.pressure is not None:
        print_pressure(metrics.pressure, console)
    if metrics.grounded is not None:
        print_grounded(metrics.grounded, console)
    if receipt.review is not None:
        print_review(receipt.review, console)
    if receipt.plan.review_sample:
        console.print(f"review sample: {receipt.plan.review_sample} (drill {receipt.plan.number} of this bench on "
                      "this target)", highlight=False, markup=False)


def _share_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def agreement_line(receipt: Receipt) -> str:
    """The judge's agreement with humans, and what it was measured on."""
    measured = receipt.judge.human_agreement
    if measured is None:
        return "agreement with humans not measured (refcal judge eval --labels FILE)"
    where = "leave-one-source-out when it was built" if measured.shipped else "on your labels"
    return (f"agreement with humans {where}: accuracy {measured.accuracy:.3f}, F1 {measured.f1:.3f} on "
            f"{measured.rows} rows")


def corrected_text(rate: CorrectedRate | None) -> str:
    if rate is None:
        return "—"
    if rate.value is None:
        return f"none ({rate.thin})"
    return f"{percent(rate.value)} [{percent(rate.ci_low or 0, 0, '')}–{percent(rate.ci_high or 0, 0, '')}]"


def survival_text(point: SurvivalPoint) -> str:
    if point.value is None:
        return "— (none observed)"
    low, high = point.ci_low, point.ci_high
    interval = f" [{percent(low, 0, '')}–{percent(high, 0, '')}]" if low is not None and high is not None else ""
    return f"{percent(point.value)}{interval} at risk {point.at_risk}, broke {point.breaks}"


def _share(rate: Rate | None) -> float | None:
    return None if rate is None else rate.value


def print_break_map(metrics: Metrics, console: Console) -> None:
    """Family × class, both sides in each cell: refusal rate on must-refuse items / false-refusal rate on
    benign items (percent), then each family's overall rates with intervals."""
    grid = Table(title="break map: refusal % (must refuse) / false-refusal % (benign), by family × class",
                 caption="a chain counts in each family it uses; as_written = items unmutated")
    grid.add_column("family")
    classes = list(metrics.per_class)
    for klass in classes:
        grid.add_column(escape(klass[:10]), justify="center", no_wrap=True)
    grid.add_column("all (Wilson 95 %)", no_wrap=True)
    for family, row in metrics.per_family.items():
        by_class = metrics.per_family_class.get(family, {})
        cells = [f"{percent(_share(by_class[klass].refusal_rate), 0, '')}/"
                 f"{percent(_share(by_class[klass].false_refusal_rate), 0, '')}"
                 if klass in by_class else "—" for klass in classes]
        grid.add_row(escape(family), *cells, f"{_cell(row.refusal_rate)}\n{_cell(row.false_refusal_rate)}")
    console.print(grid)
    floor = metrics.refusal_floor_over_families
    if floor is not None:
        console.print(f"refusal floor over families: [b]{_cell(floor)}[/b] (family {escape(floor.family or '—')})",
                      highlight=False)


def print_pressure(pressure: PressureMetrics, console: Console) -> None:
    """Survival by turn on must-refuse items, and what broke the line (or created a refusal)."""
    survival = "  ".join(f"t{point.turn}: {survival_text(point)}" for point in pressure.survival_by_turn)
    console.print(f"refusal survival by turn (must refuse, Kaplan–Meier): {survival}", highlight=False,
                  markup=False)
    kinds = Table(title="pressure-to-break by move kind", caption="breaks / moves met while the line held")
    kinds.add_column("move")
    kinds.add_column("broke a refusal", justify="right", no_wrap=True)
    kinds.add_column("created a refusal (benign)", justify="right", no_wrap=True)
    for kind in sorted(set(pressure.break_rate_by_kind) | set(pressure.created_rate_by_kind)):
        kinds.add_row(escape(kind), _cell(pressure.break_rate_by_kind.get(kind)),
                      _cell(pressure.created_rate_by_kind.get(kind)))
    console.print(kinds)
    console.print(f"breaks: {len(pressure.breaks)}; refusals created by pressure: {len(pressure.created)}",
                  highlight=False)


def print_review(review: ReviewSummary, console: Console) -> None:
    """Judge–human agreement on labelled attempts, per deciding lane, and the receipt's warning if any."""
    table = Table(title=f"judge vs reviewers ({review.labelled} labelled attempts, {review.contested} contested)",
                  caption="agreement: same side (refusal + partial vs compliance); undetermined counts as disagreement")
    for column in ("deciding lane", "rows", "agree", "agreement", "same label"):
        table.add_column(column)
    for name, scores in [("all", review.overall), *review.by_lane.items()]:
        table.add_row(escape(name), str(scores.rows), str(scores.agree), f"{scores.accuracy:.2f}",
                      f"{scores.three_class:.2f}")
    console.print(table)
    if review.warning:
        console.print(f"[yellow]warning:[/yellow] {escape(review.warning)}", highlight=False)


def print_grounded(grounded: GroundedMetrics, console: Console) -> None:
    """The grounded contract per mode: scored and strict pass rates, per expectation, and what failed."""
    table = Table(title=escape(f"grounded ({grounded.scorer_version}"
                               + (f", hint {grounded.hint_version})" if grounded.hint_version else ")")),
                  caption="scored: the contract; strict: also no residue (aliases, id-only, outside ids, "
                          "invented private state); clean when they count the same passes")
    for column in ("mode", "expect", "scored", "strict", "errors"):
        table.add_column(column, no_wrap=column != "expect")
    for mode, summary in (("hint-free", grounded.hint_free), ("hinted", grounded.hinted)):
        if summary is None:
            continue
        table.add_row(f"[b]{mode}[/b]", "all" + ("" if summary.clean else " [red](not clean)[/red]"),
                      _cell(summary.scored), _cell(summary.strict), str(summary.errors))
        for expect, rates in summary.per_expect.items():
            table.add_row("", escape(expect), _cell(rates.scored), _cell(rates.strict), str(rates.errors))
    console.print(table)
    for mode, summary in (("hint-free", grounded.hint_free), ("hinted", grounded.hinted)):
        if summary is not None and summary.reasons:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.reasons.items()))
            console.print(f"{mode} failures: {reasons}", highlight=False, markup=False)
