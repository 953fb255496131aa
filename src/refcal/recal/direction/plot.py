"""The Pareto front of a direction search, drawn: x false refusal on look-alikes, y refusal on must-refuse, grey
trials (infeasible ones hollow), the front in blue, the base a black square, the chosen trial ringed in red.

One drawing (`FrontDrawing`: which trials are placed, which are feasible, on the front, chosen) rendered two ways:
an inline SVG `<figure>` without scripts, for the loop's script-free `report.html`, and the interactive plotly
page `pareto.html` (plotly.js inline, no network) with the intervals as error bars and each trial's edit in its
hover text. Pure, but for plotly, imported when the page is written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from refcal.metrics.rates import Rate
from refcal.recal.direction.pareto import scored
from refcal.recal.direction.trials import Evaluation, SearchReport, TrialRecord

SVG_WIDTH, SVG_HEIGHT, MARGIN = 420, 320, 44
FRONT, TRIAL, CHOSEN, BASE = "#2563eb", "#9ca3af", "#dc2626", "#111"


def evaluation_text(name: str, evaluation: Evaluation) -> str:
    """A trial's (or the base's) rates with intervals and counts, and its KL: for tooltips and the terminal."""
    def interval(rate: Rate) -> str:
        if rate.value is None:
            return "–"
        return f"{rate.value:.0%} [{rate.ci_low:.0%}, {rate.ci_high:.0%}] ({rate.k}/{rate.n})"

    return (f"{name}: refusal {interval(evaluation.refusal)}, false refusal {interval(evaluation.false_refusal)}, "
            f"KL {evaluation.kl:.3f}")


@dataclass(frozen=True)
class FrontDrawing:
    """What is drawn, decided once for both renderings."""

    report: SearchReport
    placed: list[TrialRecord]
    """The scored trials, in trial order (a trial without both rates has no place)."""
    front: list[TrialRecord]
    """The front's trials, in front order: the line joins them."""
    base: Evaluation | None
    """The base, when its refusal rate is known."""

    @classmethod
    def of(cls, report: SearchReport) -> FrontDrawing:
        front = [record for number in report.front for record in report.trials if record.number == number]
        base = report.baseline if report.baseline is not None and report.baseline.refusal.value is not None else None
        return cls(report=report, placed=[record for record in report.trials if scored(record)], front=front,
                   base=base)

    def feasible(self, record: TrialRecord) -> bool:
        return record.evaluation.kl <= self.report.rule.max_kl

    def on_front(self, record: TrialRecord) -> bool:
        return record.number in self.report.front

    def chosen(self, record: TrialRecord) -> bool:
        return record.number == self.report.chosen


def pareto_fragment(report: SearchReport) -> str:
    """The front as an inline SVG `<figure>` (no scripts, so the drill report stays script-free). Each point's
    tooltip gives its rates with intervals and KL."""
    drawing = FrontDrawing.of(report)
    span_x, span_y = SVG_WIDTH - 2 * MARGIN, SVG_HEIGHT - 2 * MARGIN

    def position(evaluation: Evaluation) -> tuple[float, float]:
        return (MARGIN + (evaluation.false_refusal.value or 0.0) * span_x,
                SVG_HEIGHT - MARGIN - (evaluation.refusal.value or 0.0) * span_y)

    parts = [f'<rect x="{MARGIN}" y="{MARGIN}" width="{span_x}" height="{span_y}" fill="none" stroke="#999"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = MARGIN + tick * span_x, SVG_HEIGHT - MARGIN - tick * span_y
        parts.append(f'<text x="{x:.0f}" y="{SVG_HEIGHT - MARGIN + 14}" font-size="10" text-anchor="middle">'
                     f'{tick:.0%}</text><text x="{MARGIN - 4}" y="{y + 3:.0f}" font-size="10" text-anchor="end">'
                     f'{tick:.0%}</text>')
    parts.append(f'<text x="{SVG_WIDTH / 2:.0f}" y="{SVG_HEIGHT - 8}" font-size="11" text-anchor="middle">false '
                 f'refusal on look-alikes</text><text x="12" y="{SVG_HEIGHT / 2:.0f}" font-size="11" '
                 f'text-anchor="middle" transform="rotate(-90 12 {SVG_HEIGHT / 2:.0f})">refusal on must-refuse</text>')
    if len(drawing.front) > 1:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (position(record.evaluation) for record in drawing.front))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{FRONT}" stroke-width="1.5"/>')
    for record in drawing.placed:
        x, y = position(record.evaluation)
        colour = FRONT if drawing.on_front(record) else TRIAL
        fill = colour if drawing.feasible(record) else "none"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{colour}">'
                     f'<title>{escape(evaluation_text(f"trial {record.number}", record.evaluation))}</title></circle>')
        if drawing.chosen(record):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="{CHOSEN}" stroke-width="2"/>')
    if drawing.base is not None:
        x, y = position(drawing.base)
        parts.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{BASE}">'
                     f'<title>{escape(evaluation_text("base", drawing.base))}</title></rect>')
    title = f"Direction search ({report.mode}): {len(report.trials)} trials, KL ≤ {report.rule.max_kl:g}"
    return (f'<figure class="pareto"><svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" '
            f'height="{SVG_HEIGHT}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>'
            f'<figcaption>{escape(title)}</figcaption></figure>')


def pareto_page(report: SearchReport) -> str:
    """A whole HTML page with an interactive plotly chart (plotly.js inline: the page needs no network), the
    intervals as error bars, and every trial's edit in its hover text."""
    import plotly.graph_objects as graph

    drawing = FrontDrawing.of(report)
    figure = graph.Figure()

    def trace(name: str, evaluations: Sequence[Evaluation], labels: Sequence[str], **style: Any) -> None:
        figure.add_trace(graph.Scatter(
            x=[evaluation.false_refusal.value for evaluation in evaluations],
            y=[evaluation.refusal.value for evaluation in evaluations], name=name, text=list(labels),
            hoverinfo="text", error_x=_error_bars([evaluation.false_refusal for evaluation in evaluations]),
            error_y=_error_bars([evaluation.refusal for evaluation in evaluations]), **style))

    def label(record: TrialRecord) -> str:
        edit = escape(json.dumps(record.edit.model_dump(mode="json"), indent=1)).replace("\n", "<br>")
        return f"{escape(evaluation_text(f'trial {record.number}', record.evaluation))}<br>{edit}"

    placed = drawing.placed
    for name, group, style in (
            ("infeasible (KL above bound)", [r for r in placed if not drawing.feasible(r)],
             {"mode": "markers", "marker": {"color": TRIAL, "symbol": "circle-open"}}),
            ("trials", [r for r in placed if drawing.feasible(r) and not drawing.on_front(r)],
             {"mode": "markers", "marker": {"color": TRIAL}}),
            ("Pareto front", [r for r in drawing.front if scored(r)],
             {"mode": "lines+markers", "marker": {"color": FRONT}}),
            ("chosen", [r for r in placed if drawing.chosen(r)],
             {"mode": "markers", "marker": {"color": CHOSEN, "size": 14, "symbol": "circle-open"}})):
        trace(name, [record.evaluation for record in group], [label(record) for record in group], **style)
    if drawing.base is not None:
        trace("base", [drawing.base], [escape(evaluation_text("base", drawing.base))], mode="markers",
              marker={"color": BASE, "symbol": "square", "size": 10})
    figure.update_layout(title=f"Direction search ({report.mode}): refusal vs false refusal, KL ≤ "
                               f"{report.rule.max_kl:g}", template="plotly_white",
                         xaxis={"title": "false refusal on look-alikes", "range": [-0.05, 1.05], "tickformat": ".0%"},
                         yaxis={"title": "refusal on must-refuse", "range": [-0.05, 1.05], "tickformat": ".0%"})
    return figure.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False)


def _error_bars(rates: Sequence[Rate]) -> dict[str, Any]:
    """Asymmetric plotly error bars from Wilson intervals."""
    return {"type": "data", "symmetric": False, "thickness": 1,
            "array": [(rate.ci_high or 0.0) - (rate.value or 0.0) for rate in rates],
            "arrayminus": [(rate.value or 0.0) - (rate.ci_low or 0.0) for rate in rates]}
