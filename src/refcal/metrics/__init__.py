"""Metrics: rates with Wilson intervals, the refusal floor, pressure-to-break and agreement, all computed from
attempts already judged and stored (no model, no judge is called here)."""
