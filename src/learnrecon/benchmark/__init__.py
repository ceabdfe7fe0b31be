"""The reference benchmark: reconstruct Shepp–Logan and held-out ellipses with every method, report the numbers."""

from learnrecon.benchmark.presets import PRESETS, Preset, get_preset
from learnrecon.benchmark.runner import EvalSet, run_benchmark

__all__ = ["PRESETS", "EvalSet", "Preset", "get_preset", "run_benchmark"]
