"""Reporting: Markdown/CSV/JSON tables and matplotlib figures of reconstructions and metrics."""

from learnrecon.report.figures import metric_bars, reconstruction_grid, training_curve
from learnrecon.report.machine import machine_info
from learnrecon.report.tables import markdown_table, write_json

__all__ = ["machine_info", "markdown_table", "metric_bars", "reconstruction_grid", "training_curve", "write_json"]
