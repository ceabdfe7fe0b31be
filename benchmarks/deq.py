"""Deep equilibrium reconstruction on the quick preset's setup: iterate more, memory and time against the iterations,
the fixed-point solvers, and the contraction certificate.

Usage: python benchmarks/deq.py [--checkpoint deq-grad-ellipses] [--n-test 20] [--threads 1]
       [--parts iterations,memory,solvers,certificate] [--merge]

- iterations: PSNR against the number of iterations k (1 … 200) on Shepp–Logan and the first ``--n-test`` held-out
  ellipses of the quick preset, for the DEQ (its Anderson solver with at most k iterations at its tolerance, and
  exactly k Picard iterations) and for the shipped unrolled LGD and LPD run past their K = 10 by repeating their
  last step (``k < K``: their first k steps).
- memory: autograd's saved tensors (exact bytes) and the peak resident memory of a training step (each in a fresh
  process: ``ru_maxrss`` minus the resident memory before the step), and the time per training step, at 10, 30 and
  100 forward iterations (tolerance never met, so every iteration runs, and as many backward ones), for the DEQ
  with the implicit backward against the same step backpropagated through all its iterations
  (``backward="unrolled"``); batch 2, 128².
- solvers: Picard, Anderson and Broyden on the test data, iterations and time to relative residual 1e-4, forward
  and the implicit backward (the gradient of the MSE to the truth).
- certificate: ``model.certify`` on the test data (power iteration on the Jacobian of Γ at the fixed points).

Writes benchmarks/results/deq.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from results_file import RESULTS, provenance, publish

from learnrecon import metrics
from learnrecon.benchmark import make_tasks
from learnrecon.benchmark.presets import get_preset
from learnrecon.models import build_model, load_model, pretrained, pretrained_names
from learnrecon.models.base import network_input
from learnrecon.report import machine_info, markdown_table

ITERATIONS = (1, 2, 5, 10, 20, 30, 50, 100, 200)


def table(rows: list[dict], digits: int) -> str:
    columns = list(rows[0])
    return markdown_table(rows, columns, {c: digits for c in columns})


def load(name: str):
    return pretrained(name) if name in pretrained_names() else load_model(name)


def test_sets(n_test: int):
    preset = get_preset("quick")
    op = preset.operator()
    tasks = make_tasks(preset, op)
    sets = [tasks[0].test, tasks[1].test]
    return op, [(s.name, s.x[:n_test], s.y[:n_test]) for s in sets]


@torch.no_grad()
def unrolled_past_k(model, y, op, n: int) -> torch.Tensor:
    """The unrolled ``model``'s first ``n`` steps, repeating its last step past its ``n_iter``."""
    flat = network_input(model, y, op, model.convolved_spaces)
    state, y_work, op_work = model.prepare(flat, op)
    for k in range(n):
        state = model.steps[min(k, len(model.steps) - 1)](state, y_work, op_work)
    return model.readout(state).reshape(y.shape[0], 1, *op.domain_shape)


@torch.no_grad()
def deq_picard_curve(model, y, op, x, ks) -> dict[int, float]:
    """PSNR after exactly k Picard iterations of the DEQ's Γ, for each k in ``ks``."""
    from learnrecon.models.lipschitz import frozen_normalisation

    out = {}
    with frozen_normalisation(model):
        z, gamma, unpack = model._problem(y, op)
        for k in range(1, max(ks) + 1):
            z = gamma(z)
            if k in ks:
                out[k] = float(metrics.psnr(model.readout(unpack(z)), x).mean())
    return out


def part_iterations(deq, op, sets, ks) -> list[dict]:
    rows = []
    unrolled = {name: pretrained(name) for name in ("lgd-ellipses", "lpd-ellipses") if name in pretrained_names()}
    for set_name, x, y in sets:
        picard = deq_picard_curve(deq, y, op, x, ks)
        anderson = {}
        saved = deq.max_iter
        for k in ks:
            deq.max_iter = k
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a k below the iterations needed is not converged, by design
                anderson[k] = float(metrics.psnr(deq(y, op), x).mean())
        deq.max_iter = saved
        curves = {"DEQ (Anderson, ≤ k iterations, tol)": anderson, "DEQ (k Picard iterations)": picard}
        for name, model in unrolled.items():
            curves[f"{name} (unrolled, last step repeated)"] = {
                k: float(metrics.psnr(unrolled_past_k(model, y, op, k), x).mean()) for k in ks
            }
        for method, curve in curves.items():
            rows.append({"test set": set_name, "method": method, **{str(k): curve[k] for k in ks}})
    return rows


def plot_iterations(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["test set"] for r in rows})
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        for r in rows:
            if r["test set"] == name:
                ax.plot(ITERATIONS, [r[str(k)] for k in ITERATIONS], marker="o", label=r["method"])
        top = max(v for r in rows if r["test set"] == name for v in (r[str(k)] for k in ITERATIONS) if v is not None)
        ax.set(xscale="log", xlabel="iterations k", ylabel="PSNR (dB)", title=f"{name} (below 10 dB not shown)")
        ax.set_ylim(10, top + 2)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_memory(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for backward in ("implicit", "unrolled"):
        mine = [r for r in rows if r["backward"] == backward]
        n = [r["forward iterations"] for r in mine]
        axes[0].plot(n, [r["peak_rss_increase_MB"] for r in mine], marker="o", label=f"{backward} (peak RSS)")
        axes[0].plot(n, [r["saved_MB"] for r in mine], marker="x", ls="--", label=f"{backward} (saved tensors)")
        axes[1].plot(n, [r["seconds"] for r in mine], marker="o", label=backward)
    axes[0].set(xlabel="forward iterations", ylabel="MB", title="training memory")
    axes[1].set(xlabel="forward iterations", ylabel="s", title="time per training step")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def memory_child(spec: dict) -> dict:
    """One training step of a fresh model in this process: saved bytes, peak RSS increase, seconds."""
    torch.set_num_threads(spec["threads"])
    preset = get_preset("quick")
    op = preset.operator()
    tasks = make_tasks(preset, op)
    x, y = tasks[1].test.x[:2], tasks[1].test.y[:2]
    torch.manual_seed(0)
    params = {
        **spec["params"],
        "tol": 1e-30,
        "backward_tol": 1e-30,
        "max_iter": spec["n"],
        "backward": spec["backward"],
    }
    model = build_model("deq-grad", params).train()
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    before = _rss_bytes()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.mse_loss(model(y, op), x)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"saved_MB": saved / 1e6, "peak_rss_increase_MB": peak / 1e6, "seconds": seconds}


def part_memory(params: dict, threads: int, ns=(10, 30, 100)) -> list[dict]:
    rows = []
    for backward in ("implicit", "unrolled"):
        for n in ns:
            spec = {"params": params, "backward": backward, "n": n, "threads": threads}
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"backward": backward, "forward iterations": n, **result})
    return rows


def part_solvers(deq, op, sets) -> list[dict]:
    rows = []
    for set_name, x, y in sets:
        for solver in ("picard", "anderson", "broyden"):
            deq.solver = deq.backward_solver = solver
            saved = deq.max_iter
            deq.max_iter = deq.backward_max_iter = 200
            deq.train()
            start = time.perf_counter()
            x_hat = deq(y, op)
            forward_s = time.perf_counter() - start
            fwd = deq.last_forward
            loss = torch.nn.functional.mse_loss(x_hat, x, reduction="sum")
            start = time.perf_counter()
            loss.backward()
            backward_s = time.perf_counter() - start
            back = deq.last_backward
            deq.zero_grad(set_to_none=True)
            deq.max_iter = deq.backward_max_iter = saved
            rows.append(
                {
                    "test set": set_name,
                    "solver": solver,
                    "forward iterations (mean)": float(fwd.iterations.float().mean()),
                    "forward converged": float(fwd.converged.float().mean()),
                    "forward ≤ 30 iterations": float(((fwd.iterations <= 30) & fwd.converged).float().mean()),
                    "forward s/image": forward_s / y.shape[0],
                    "backward iterations (mean)": float(back.iterations.float().mean()),
                    "backward converged": float(back.converged.float().mean()),
                    "backward s/image": backward_s / y.shape[0],
                }
            )
    deq.eval()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="deq-grad-ellipses", help="shipped name or checkpoint path")
    parser.add_argument("--n-test", type=int, default=20, help="held-out ellipses used (of the preset's 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--parts", default="iterations,memory,solvers,certificate", help="comma-separated parts")
    parser.add_argument("--merge", action="store_true", help="keep the parts of results/deq.json not run now")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    deq = load(args.checkpoint).eval()
    op, sets = test_sets(args.n_test)
    previous = RESULTS / "deq.json"
    record: dict = json.loads(previous.read_text()) if args.merge and previous.exists() else {}
    record.update({"checkpoint": args.checkpoint, "model": deq.spec, "n_test": args.n_test})
    runs = record.setdefault("runs", {})
    here = {"machine": machine_info(), "provenance": provenance(machine_info())}
    if "iterations" in parts:
        start = time.perf_counter()
        rows = part_iterations(deq, op, sets, ITERATIONS)
        gaps = []
        for row in rows:
            curve = [row[str(k)] for k in ITERATIONS]
            best = max(curve)
            gaps.append(
                {
                    "test set": row["test set"],
                    "method": row["method"],
                    "best": best,
                    "best k": ITERATIONS[curve.index(best)],
                    "best − PSNR(200) dB": best - curve[-1],
                }
            )
        record["iterations"], record["iterations_gap"] = rows, gaps
        runs["iterations"] = {**here, "seconds": time.perf_counter() - start}
        plot_iterations(rows, RESULTS / "deq-iterations.png")
    if "memory" in parts:
        start = time.perf_counter()
        record["memory"] = rows = part_memory(deq.spec["params"], args.threads)
        by = {(r["backward"], r["forward iterations"]): r for r in rows}
        ratio = {
            b: by[b, 100]["peak_rss_increase_MB"] / by[b, 10]["peak_rss_increase_MB"] for b in ("implicit", "unrolled")
        }
        saved = {b: by[b, 100]["saved_MB"] / by[b, 10]["saved_MB"] for b in ("implicit", "unrolled")}
        record["memory_ratio_100_to_10"] = {"peak_rss": ratio, "saved": saved}
        runs["memory"] = {**here, "seconds": time.perf_counter() - start}
        plot_memory(rows, RESULTS / "deq-memory.png")
    if "solvers" in parts:
        start = time.perf_counter()
        record["solvers"] = part_solvers(deq, op, sets)
        runs["solvers"] = {**here, "seconds": time.perf_counter() - start}
    if "certificate" in parts:
        start = time.perf_counter()
        record["certificate"] = [{"test set": name, **deq.certify(y, op).as_dict()} for name, _, y in sets]
        runs["certificate"] = {**here, "seconds": time.perf_counter() - start}
    publish("deq", record, render(record))


def render(record: dict) -> str:
    """The Markdown report of every part in ``record``."""
    runs = record["runs"]
    text = [f"# Deep equilibrium reconstruction ({record['checkpoint']})\n"]
    text.append(
        f"Quick preset's setup (128², 30 angles, 5 % noise); Shepp–Logan and the first {record['n_test']} of its 100 "
        "held-out ellipses. PSNR in dB with each reference image's own range (the library's convention).\n"
    )
    if "iterations" in record:
        text += ["## PSNR against the number of iterations k\n", table(record["iterations"], 2)]
        text += ["![PSNR against iterations](deq-iterations.png)\n", table(record["iterations_gap"], 3)]
        text.append(f"{runs['iterations']['provenance']} ({runs['iterations']['seconds']:.0f} s)\n")
    if "memory" in record:
        ratio, saved = record["memory_ratio_100_to_10"]["peak_rss"], record["memory_ratio_100_to_10"]["saved"]
        text += [
            "## Training memory and time per step against the forward iterations (batch 2, 128²)\n",
            table(record["memory"], 2),
            f"Peak memory at 100 iterations / at 10: implicit {ratio['implicit']:.2f}×, unrolled "
            f"{ratio['unrolled']:.2f}× (saved tensors: {saved['implicit']:.2f}×, {saved['unrolled']:.2f}×).\n",
            "![memory and time against iterations](deq-memory.png)\n",
            f"{runs['memory']['provenance']} ({runs['memory']['seconds']:.0f} s)\n",
        ]
    if "solvers" in record:
        text += ["## Fixed-point solvers to relative residual 1e-4 (at most 200 iterations)\n",
                 table(record["solvers"], 3), f"{runs['solvers']['provenance']}\n"]  # fmt: skip
    if "certificate" in record:
        text += ["## Contraction certificate (‖∂Γ/∂u‖ at the fixed points, power iteration)\n",
                 table(record["certificate"], 4), f"{runs['certificate']['provenance']}\n"]  # fmt: skip
    return "\n".join(text) + "\n"


if __name__ == "__main__":
    main()
