"""Reporting: Markdown/CSV/JSON tables, matplotlib figures of reconstructions and metrics, and the HTML page
of a benchmark report."""

from learnrecon.report.figures import metric_bars, reconstruction_grid, training_curve
from learnrecon.report.html import write_html_report
from learnrecon.report.machine import machine_info
from learnrecon.report.tables import markdown_table, write_json

__all__ = [
    "machine_info",
    "markdown_table",
    "metric_bars",
    "reconstruction_grid",
    "training_curve",
    "write_html_report",
    "write_json",
]
