"""Reports: a rich terminal summary and a self-contained HTML page."""

from refcal.report.html import render_html, worst_attempts
from refcal.report.terminal import print_summary

__all__ = ["print_summary", "render_html", "worst_attempts"]
