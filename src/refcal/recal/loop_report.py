"""`OUT/report.html` of the recalibration loop: the stages, the gates on the base and on the candidate side by side,
and what training did (the SFT loss, or the direction search's Pareto front). Script-free, every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from refcal.recal.loop_config import LoopConfig

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#111}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;
vertical-align:top}.pass{color:#15803d;font-weight:600}.fail{color:#b91c1c;font-weight:600}
.verdict{font-size:1.6em;font-weight:700}small{color:#555}"""


def _result(passed: bool) -> str:
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def loop_page(config: LoopConfig, runs: Sequence[Any], rows: Sequence[Any], promoted: bool,
              model: dict[str, Any]) -> str:
    stage_rows = "".join(
        f"<tr><td>{escape(run.stage)}</td><td>{'skipped (done earlier)' if run.skipped else 'ran'}</td>"
        f"<td>{run.record.wall_s:.0f} s</td><td>{escape(run.record.finished_at)}</td>"
        f"<td><small>{escape(run.record.key)}</small></td></tr>" for run in runs)
    gate_rows = "".join(
        f"<tr><td>{escape(row.bench)}</td><td>{escape(row.claim)}</td>"
        f"<td>{_result(row.base_passed)}<br><small>{escape('; '.join(row.base_figures))}</small></td>"
        f"<td>{_result(row.candidate_passed)}<br><small>{escape('; '.join(row.candidate_figures))}</small>"
        + (f"<br><small>{escape('; '.join(row.problems))}</small>" if row.problems else "") + "</td></tr>"
        for row in rows)
    verdict = ('<span class="pass">PROMOTED</span>' if promoted else '<span class="fail">REJECTED</span>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>refcal recal run: {escape(config.base)}</title>"
            f"<style>{STYLE}</style></head><body><h1>Recalibration of {escape(config.base)} ({escape(config.method)})"
            f"</h1><p class='verdict'>{verdict}</p><p>config <code>{escape(str(config.path))}</code>; gates "
            f"<code>{escape(str(config.gates))}</code>; gated benches {escape(', '.join(config.benches))}; training "
            f"bench {escape(config.corpus.source)}</p><h2>Gates: base vs candidate</h2><table><tr><th>bench</th>"
            f"<th>claim</th><th>base</th><th>candidate</th></tr>{gate_rows}</table><h2>Training</h2>"
            f"{_training(config, model)}<h2>Stages</h2><table><tr><th>stage</th><th>this run</th><th>wall time</th>"
            f"<th>finished</th><th>key</th></tr>{stage_rows}</table></body></html>\n")


def _training(config: LoopConfig, model: dict[str, Any]) -> str:
    if config.method == "sft":
        loss = model.get("loss")
        text = (f"LoRA SFT, {model.get('steps')} steps" + (f", loss {loss[0]:.3f} → {loss[1]:.3f}" if loss else "")
                + f"; model <code>{escape(str(model.get('model_dir')))}</code>")
        return f"<p>{text}</p>"
    from refcal.recal.direction import pareto_fragment, read_report

    trials = model.get("trials_path")
    figure = pareto_fragment(read_report(Path(trials))) if trials and Path(trials).is_file() else ""
    return (f"<p>Direction edit, trial {escape(str(model.get('chosen')))} chosen; model "
            f"<code>{escape(str(model.get('model_dir')))}</code></p>{figure}")
