"""A self-contained HTML report: no scripts, no external assets, every model output escaped.

Plots are inline SVG: per-class refusal rate (must-refuse items) and false-refusal rate (benign
items), each a point with its Wilson 95 % interval.
"""

from __future__ import annotations

from html import escape

from refcal.metrics.agreement import JudgeAgreement, ReviewSummary
from refcal.metrics.pressure import PressureMetrics
from refcal.metrics.rates import percent as _percent
from refcal.metrics.summary import GroundedMetrics, Rate
from refcal.receipts import Receipt
from refcal.records import Attempt
from refcal.report.breakmap import breaks_html, find_breaks, heatmap_html
from refcal.report.terminal import agreement_line, corrected_text, survival_text

ROW_HEIGHT = 22
PLOT_WIDTH = 420
LABEL_WIDTH = 170


def worst_attempts(attempts: list[Attempt], limit: int = 20) -> list[Attempt]:
    """Failures first: compliance on must-refuse items, then refusals of benign items, then the rest
    of the partials; most confident verdicts first."""
    def rank(attempt: Attempt) -> tuple[int, float] | None:
        verdict = attempt.verdict
        if verdict is None:
            return None
        if attempt.variant.expect == "refuse" and verdict.label == "compliance":
            return (0, -verdict.score)
        if attempt.variant.expect == "comply" and verdict.label == "refusal":
            return (1, -verdict.score)
        if verdict.label == "partial_refusal":
            return (2, -verdict.score)
        return None
    ranked = [(key, attempt) for attempt in attempts if (key := rank(attempt)) is not None]
    return [attempt for _, attempt in sorted(ranked, key=lambda pair: pair[0])[:limit]]


def _rate_text(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "—"
    return f"{_percent(rate.value)} [{_percent(rate.ci_low)}, {_percent(rate.ci_high)}] (n={rate.n})"


def _plot(title: str, rows: list[tuple[str, Rate | None]], colour: str) -> str:
    rows = [(name, rate) for name, rate in rows if rate is not None and rate.value is not None]
    height = ROW_HEIGHT * len(rows) + 40
    width = LABEL_WIDTH + PLOT_WIDTH + 190
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    for tick in range(0, 101, 25):
        x = LABEL_WIDTH + PLOT_WIDTH * tick / 100
        parts.append(f'<line x1="{x}" y1="10" x2="{x}" y2="{height - 25}" stroke="#ddd"/>'
                     f'<text x="{x}" y="{height - 8}" font-size="11" text-anchor="middle">{tick}%</text>')
    for index, (name, rate) in enumerate(rows):
        assert rate is not None and rate.value is not None
        y = 20 + index * ROW_HEIGHT
        low, high = (LABEL_WIDTH + PLOT_WIDTH * bound for bound in (rate.ci_low or 0.0, rate.ci_high or 0.0))
        point = LABEL_WIDTH + PLOT_WIDTH * rate.value
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 4}" font-size="12" text-anchor="end">'
                     f'{escape(name)}</text>'
                     f'<line x1="{low:.1f}" y1="{y}" x2="{high:.1f}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
                     f'<circle cx="{point:.1f}" cy="{y}" r="4" fill="{colour}">'
                     f'<title>{escape(name)}: {escape(_rate_text(rate))}</title></circle>'
                     f'<text x="{LABEL_WIDTH + PLOT_WIDTH + 12}" y="{y + 4}" font-size="11">'
                     f'{escape(_percent(rate.value))} (n={rate.n})</text>')
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _attempt_block(attempt: Attempt) -> str:
    verdict = attempt.verdict
    assert verdict is not None
    variant = attempt.variant
    return (f'<div class="attempt"><p class="meta">{escape(variant.id)} · class {escape(variant.klass)} · '
            f'expect {escape(variant.expect)} · verdict <b>{escape(verdict.label)}</b> '
            f'({verdict.score:.2f}, {escape(verdict.lane)}) · {escape(verdict.reason)}</p>'
            f'<pre class="prompt">{escape(variant.prompt)}</pre>'
            f'<pre class="response">{escape(attempt.response or "")}</pre></div>')


def render_html(receipt: Receipt, attempts: list[Attempt]) -> str:
    """The whole report as one HTML string."""
    metrics = receipt.metrics
    classes = metrics.per_class
    floor = metrics.refusal_floor
    errors = [attempt for attempt in attempts if attempt.is_error][:20]
    measured = receipt.judge.human_agreement
    agreement_text = (f"{agreement_line(receipt)} ({measured.labels})" if measured else
                      "not measured: run `refcal judge eval --labels FILE` for this judge version")
    corrected = receipt.corrected
    corrected_rows = [] if corrected is None else [
        (f"Refusal rate corrected for the judge's error (Se {corrected.sensitivity or 0:.2f}, Sp "
         f"{corrected.specificity or 0:.2f}; {corrected.basis})", corrected_text(corrected.refusal_rate)),
        (f"Refusal floor corrected (class {corrected.floor_class or '—'})", corrected_text(corrected.refusal_floor)),
        ("False-refusal rate corrected for the judge's error", corrected_text(corrected.false_refusal_rate)),
        ("Correction method", corrected.method),
    ]
    summary_rows = [
        ("Refusal rate (must-refuse items)", _rate_text(metrics.refusal_rate)),
        (f"Refusal floor (class {floor.klass or '—'})", _rate_text(floor)),
        ("False-refusal rate (benign items)", _rate_text(metrics.false_refusal_rate)),
        ("Attempts / errors / undetermined / cached",
         f"{receipt.counts.attempts} / {receipt.counts.errors} / {receipt.counts.undetermined} / "
         f"{receipt.counts.cached}"),
        (f"Judge agreement with humans ({receipt.judge.name} {receipt.judge.version})", agreement_text),
        *corrected_rows,
    ]
    body = [
        f"<h1>refcal drill {escape(receipt.run_id)}</h1>",
        f'<p class="meta">bench {escape(receipt.bench.name)} ({escape(receipt.bench.digest)}) · target '
        f'{escape(receipt.target.spec)} · judge {escape(receipt.judge.name)} {escape(receipt.judge.version)} · '
        f'status {escape(receipt.status)} · {escape(receipt.finished_at)}</p>',
        "<table>" + "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"
                            for name, value in summary_rows) + "</table>",
        _plot("Refusal rate by class (must-refuse items), Wilson 95 %",
              [(klass, row.refusal_rate) for klass, row in classes.items()], "#1f6f3f"),
        _plot("False-refusal rate by class (benign items), Wilson 95 %",
              [(klass, row.false_refusal_rate) for klass, row in classes.items()], "#a33a2a"),
        heatmap_html(receipt.metrics),
        _pressure_section(receipt.metrics.pressure, attempts) if receipt.metrics.pressure else "",
        _grounded_section(receipt.metrics.grounded, attempts) if receipt.metrics.grounded else "",
        _review_section(receipt.review) if receipt.review else "",
        breaks_html(find_breaks(attempts)),
        "<h2>Worst responses</h2>",
        "".join(_attempt_block(attempt) for attempt in worst_attempts(attempts)) or "<p>None.</p>",
        "<h2>Errors</h2>",
        "".join(f'<p class="meta">{escape(attempt.variant.id)}: {escape(attempt.error or "")}</p>'
                for attempt in errors) or "<p>None.</p>",
    ]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
            f"<title>refcal {escape(receipt.run_id)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _pressure_section(pressure: PressureMetrics, attempts: list[Attempt], limit: int = 30) -> str:
    """Survival by turn, rates per move kind, and each break with the whole conversation that led to it."""
    survival = "".join(f"<tr><th>turn {point.turn}</th><td>{escape(survival_text(point))}</td></tr>"
                       for point in pressure.survival_by_turn)
    kinds = "".join(f"<tr><th>{escape(kind)}</th><td>{escape(_rate_text(pressure.break_rate_by_kind.get(kind)))}</td>"
                    f"<td>{escape(_rate_text(pressure.created_rate_by_kind.get(kind)))}</td></tr>"
                    for kind in sorted(set(pressure.break_rate_by_kind) | set(pressure.created_rate_by_kind)))
    by_turn = {(attempt.variant.item_id, attempt.variant.script, attempt.variant.turn): attempt for attempt in attempts}
    blocks = []
    sections = (("refusal gave way", pressure.breaks), ("pressure created a refusal", pressure.created))
    for kind_of_break, found in sections:
        for item in found[:limit]:
            attempt = by_turn.get((item.item_id, item.script, item.turn))
            if attempt is None:
                continue
            turns = "".join(f'<pre class="{"prompt" if message.role == "user" else ""}">{escape(message.role)}: '
                            f"{escape(message.content)}</pre>" for message in attempt.variant.messages)
            blocks.append(f'<div class="attempt"><p class="meta">{escape(kind_of_break)} · {escape(item.klass)} · item '
                          f"{escape(item.item_id)} · script {escape(item.script)} · turn {item.turn} "
                          f"({escape(item.kind)})</p>{turns}<pre>assistant: {escape(attempt.response or '')}</pre>"
                          "</div>")
    return ("<h2>Pressure</h2><h3>Refusal survival by turn (must-refuse items, Kaplan–Meier)</h3><table>" + survival
            + "</table>"
            "<h3>By move kind</h3><table><tr><th>move</th><th>broke a refusal</th><th>created a refusal (benign)</th>"
            "</tr>" + kinds + "</table>" + (f"<h3>Break points ({len(pressure.breaks)} + {len(pressure.created)})</h3>"
                                             + "".join(blocks) if blocks else ""))


def _grounded_section(grounded: GroundedMetrics, attempts: list[Attempt], limit: int = 20) -> str:
    """Both columns per mode and expectation, then the failing responses with the rules they broke."""
    rows = []
    for mode, summary in (("hint-free", grounded.hint_free), ("hinted", grounded.hinted)):
        if summary is None:
            continue
        for expect, rates in [("all", summary), *summary.per_expect.items()]:
            rows.append(f"<tr><th>{escape(mode)}</th><td>{escape(expect)}</td><td>{escape(_rate_text(rates.scored))}"
                        f"</td><td>{escape(_rate_text(rates.strict))}</td><td>{rates.errors}</td></tr>")
    failing = [attempt for attempt in attempts if attempt.grounded is not None and not attempt.grounded.strict][:limit]
    blocks = "".join(f'<div class="attempt"><p class="meta">{escape(attempt.variant.id)} · expect '
                     f"{escape(attempt.variant.expect)} · scored {'pass' if attempt.grounded.scored else 'FAIL'} · "
                     f"strict FAIL · {escape('; '.join(attempt.grounded.evidence or attempt.grounded.reasons))}</p>"
                     f'<pre class="prompt">{escape(attempt.variant.prompt)}</pre>'
                     f'<pre class="response">{escape(attempt.response or "")}</pre></div>'
                     for attempt in failing if attempt.grounded is not None)
    verdict = "clean (scored == strict)" if grounded.clean else "NOT clean: some passes carry residue"
    return (f"<h2>Grounded</h2><p class=\"meta\">{escape(grounded.scorer_version)} · hint "
            f"{escape(grounded.hint_version or '—')} · {escape(verdict)}</p><table><tr><th>mode</th><th>expect</th>"
            "<th>scored</th><th>strict</th><th>errors</th></tr>" + "".join(rows) + "</table>"
            + (f"<h3>Failing strict ({len(failing)} shown)</h3>" + blocks if blocks else ""))


def _review_section(review: ReviewSummary) -> str:
    """Judge–human agreement on the attempts people labelled, overall and per deciding lane."""
    def row(name: str, scores: JudgeAgreement) -> str:
        return (f"<tr><th>{escape(name)}</th><td>{scores.rows}</td><td>{scores.agree}</td>"
                f"<td>{_percent(scores.accuracy)}</td><td>{_percent(scores.three_class)}</td></tr>")
    warning = f'<p class="warn">{escape(review.warning)}</p>' if review.warning else ""
    return (f"<h2>Review</h2>{warning}<p class=\"meta\">{review.labelled} labelled attempts by "
            f"{escape(', '.join(review.reviewers))}; {review.contested} contested (reviewers disagree, left out); "
            f"threshold {review.threshold:.2f}</p><table><tr><th>deciding lane</th><th>rows</th><th>agree</th>"
            "<th>agreement (refusal side)</th><th>same label (3 classes)</th></tr>"
            + row("all", review.overall) + "".join(row(lane, scores) for lane, scores in review.by_lane.items())
            + "</table>")


_CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{text-align:left;padding:4px 12px;border-bottom:1px solid #eee}
figure{margin:1.5em 0}figcaption{font-weight:600;margin-bottom:4px}
.meta{color:#555;font-size:13px}.attempt{border-left:3px solid #a33a2a;padding-left:10px;margin:1em 0}
pre{white-space:pre-wrap;background:#f6f6f6;padding:8px;margin:4px 0}pre.prompt{background:#eef3fb}
table.heat td.hm{text-align:center;min-width:52px;font-size:13px}table.heat small{color:#444}
div.wide{overflow-x:auto}p.warn{background:#fff3cd;border-left:3px solid #b8860b;padding:6px 10px}
"""
