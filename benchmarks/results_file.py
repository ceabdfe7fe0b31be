"""Where the benchmark scripts write their results, and the provenance line each results file carries."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from learnrecon.report import write_json

RESULTS = Path(__file__).parent / "results"


def provenance(info: dict) -> str:
    """``Machine: <platform>, <n> CPUs, torch <version> (<t> threads)[, <GPU>]. Command: `python <argv>`.``

    ``info`` is :func:`learnrecon.report.machine_info` of the run; the command is the one that was typed."""
    gpu = f", {info['gpu']}" if "gpu" in info else ""
    return (
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads){gpu}. Command: `{shlex.join(['python', *sys.argv])}`."
    )


def publish(stem: str, record: dict, text: str) -> None:
    """Write ``record`` to ``results/<stem>.json`` and the Markdown ``text`` to ``results/<stem>.md``, and print
    the Markdown."""
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{stem}.json", record)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
