"""The drift ledger as one HTML page: the median times, the entries table (entries open past 14 days
highlighted), and one control chart per metric and segment — the rate per window, the centre line, the upper
limit, breaches marked and each entry's onset drawn. plotly.js is embedded once, so the page needs no network.
Every text from traffic or people is HTML-escaped; sample references are already redacted by the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from itertools import groupby
from typing import Any

from refcal.errors import MissingExtraError
from refcal.watch.control import ChartPoint
from refcal.watch.ledger import Entry, age, is_stale, summarise, time_to_correct, time_to_detect

INSTALL_HINT = "pip install plotly (or refcal[recal])"

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f4f6}
tr.stale td{background:#fef9c3}.warn{color:#92400e;background:#fef9c3;padding:6px 10px;display:inline-block}
.muted{color:#6b7280}"""


def duration(delta: timedelta | float | None) -> str:
    """A duration (or seconds) as people read it: 3d 4h, 2h 5m, 40s; None is a dash."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m {seconds % 60}s" if minutes else f"{sign}{seconds}s"


def ledger_page(entries: Sequence[Entry], points: Sequence[ChartPoint], now: datetime | None = None) -> str:
    """The whole page."""
    now = now or datetime.now(UTC)
    summary = summarise(entries, now)
    head = (f"<p>{summary.entries} entries: {summary.open} open, {summary.acked} acknowledged, {summary.resolved} "
            f"resolved. Median time to detect {duration(summary.median_time_to_detect)}, median time to correct "
            f"{duration(summary.median_time_to_correct)}.</p>")
    if summary.stale:
        head += (f"<p class='warn'>Open for more than 14 days: entries {escape(', '.join(map(str, summary.stale)))}"
                 ".</p>")
    charts = chart_sections(entries, points)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>refcal drift ledger</title>"
            f"<style>{STYLE}</style></head><body><h1>Drift ledger</h1>{head}"
            f"<h2>Entries</h2>{entries_table(entries, now)}<h2>Control charts</h2>{charts}</body></html>")


def entries_table(entries: Sequence[Entry], now: datetime) -> str:
    if not entries:
        return "<p class='muted'>No entries: no breach so far.</p>"
    header = ("id", "metric", "segment", "status", "onset", "detected", "TTD", "TTC", "age", "acked by",
              "evidence", "resolution")
    rows = []
    for entry in entries:
        rules = ", ".join(f"{breach.rule}@{breach.index}" for breach in entry.evidence)
        resolution = f"{entry.resolution} — {entry.receipt_path}" if entry.resolution else ""
        cells = (entry.id, entry.metric, entry.segment, entry.status, entry.onset, entry.detected_at,
                 duration(time_to_detect(entry)), duration(time_to_correct(entry)),
                 duration(age(entry, now)), entry.acked_by or "", f"{rules}; samples: {', '.join(entry.samples)}",
                 resolution)
        css = " class='stale'" if is_stale(entry, now) else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{name}</th>" for name in header) + "</tr>" + "".join(rows) + "</table>")


def chart_sections(entries: Sequence[Entry], points: Sequence[ChartPoint]) -> str:
    """One chart per (metric, segment) with window history, plotly.js inlined in the first only."""
    streams = [(key, list(group)) for key, group in
               groupby(sorted(points, key=lambda point: (point.metric, point.segment, point.index)),
                       key=lambda point: (point.metric, point.segment))]
    if not streams:
        return "<p class='muted'>No window history recorded yet.</p>"
    sections = []
    for number, ((metric, segment), stream) in enumerate(streams):
        related = [entry for entry in entries if (entry.metric, entry.segment) == (metric, segment)]
        figure = control_chart(metric, segment, stream, related)
        html = figure.to_html(full_html=False, include_plotlyjs=number == 0, include_mathjax=False)
        sections.append(f"<section class='chart' data-metric='{escape(metric, quote=True)}' "
                        f"data-segment='{escape(segment, quote=True)}'>{html}</section>")
    return "".join(sections)


def control_chart(metric: str, segment: str, points: Sequence[ChartPoint], entries: Sequence[Entry]) -> Any:
    """A plotly figure: rate per window, centre line, upper limit (steps, as n varies), breaches, onsets."""
    try:
        import plotly.graph_objects as graph
    except ImportError:
        raise MissingExtraError(f"the ledger page needs plotly: {INSTALL_HINT}") from None
    times = [point.end for point in points]
    hover = [escape(f"window {point.index}: {point.events}/{point.n}") for point in points]
    figure = graph.Figure()
    figure.add_trace(graph.Scatter(x=times, y=[point.rate for point in points], name="rate", mode="lines+markers",
                                   text=hover, hoverinfo="text+y", marker={"color": "#2563eb", "size": 5}))
    figure.add_trace(graph.Scatter(x=times, y=[point.centre for point in points], name="baseline (centre)",
                                   mode="lines", line={"color": "#6b7280", "dash": "dot", "shape": "hv"}))
    figure.add_trace(graph.Scatter(x=times, y=[point.upper for point in points], name="upper limit",
                                   mode="lines", line={"color": "#dc2626", "dash": "dash", "shape": "hv"}))
    breached = [point for point in points if point.rules]
    figure.add_trace(graph.Scatter(
        x=[point.end for point in breached], y=[point.rate for point in breached], name="breach", mode="markers",
        text=[escape(f"window {point.index}: {', '.join(point.rules)}") for point in breached], hoverinfo="text",
        marker={"color": "#dc2626", "size": 12, "symbol": "x"}))
    for entry in entries:
        figure.add_shape(type="line", x0=entry.onset, x1=entry.onset, yref="paper", y0=0, y1=1,
                         line={"color": "#f59e0b", "dash": "dot"})
        figure.add_annotation(x=entry.onset, yref="paper", y=1, text=escape(f"entry {entry.id} onset"),
                              showarrow=False, yanchor="bottom", font={"size": 10})
    figure.update_layout(title=escape(f"{metric} — {segment}"), template="plotly_white", height=360,
                         yaxis={"title": "rate per window", "tickformat": ".0%", "rangemode": "tozero"},
                         xaxis={"title": "window end"}, margin={"t": 60, "b": 40})
    return figure
