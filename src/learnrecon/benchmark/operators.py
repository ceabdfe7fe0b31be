"""Time learnrecon's ray transforms: forward, adjoint and FBP per image, build time and matrix memory.

Run by ``learnrecon benchmark operators [--cases a,b,c,fan] [--repeats 5] [--no-astra] [--out DIR]`` or
``python benchmarks/operators.py`` (same options); writes ``operators-<device>.json`` and ``.md``.
When ASTRA is installed (``pip install astra-toolbox``) its CPU projector ('linear' for parallel beam,
'line_fanflat' for fan beam) is timed in the same process, image by image (it has no batching), with the
speed-up of learnrecon at batch 16 over it. DeepInverse is not compared here: its wheels pull another
torch build, so it needs its own environment.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from learnrecon.metrics import psnr
from learnrecon.operators import FanBeam2D, ParallelBeam2D
from learnrecon.phantoms import shepp_logan
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.solvers import fbp

CASES = {
    "a": lambda: ParallelBeam2D(128, 30, n_detectors=183),
    "b": lambda: ParallelBeam2D(256, 180, n_detectors=363),
    "c": lambda: ParallelBeam2D(362, 1000, n_detectors=513),
    "fan": lambda: FanBeam2D(256, 360, 363, source_distance=512.0, detector_distance=256.0),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(name: str, repeats: int, device: torch.device) -> list[dict]:
    op = CASES[name]()
    start = time.perf_counter()
    op._matrices(torch.float32, device)
    build = time.perf_counter() - start
    rows = []
    x1 = shepp_logan(op.image_shape[0]).float().to(device)
    fbp_psnr = float(psnr(fbp(op(x1), op, filter="ram-lak"), x1)) if isinstance(op, ParallelBeam2D) else None
    for batch in (1, 16):
        x = shepp_logan(op.image_shape[0]).float().to(device).expand(batch, 1, *op.image_shape).contiguous()
        y = op(x)
        rows.append(
            {
                "case": name,
                "method": "learnrecon (CSR)",
                "geometry": repr(op),
                "batch": batch,
                "forward ms/img": 1e3 * median_seconds(lambda x=x: op(x), repeats) / batch,
                "adjoint ms/img": 1e3 * median_seconds(lambda y=y: op.H(y), repeats) / batch,
                "fbp ms/img": 1e3 * median_seconds(lambda y=y: fbp(y, op, filter="hann"), repeats) / batch,
                "build s": build,
                "matrix MB": op.memory_bytes() / 2**20,
                "adjoint mismatch": adjoint_mismatch(op, device),
                "noiseless FBP PSNR (ram-lak)": fbp_psnr,
            }
        )
    return rows


def astra_row(name: str, op, repeats: int) -> dict | None:
    """ASTRA's CPU projector on the same geometry, image by image: ms per image and its FBP's PSNR."""
    try:
        import astra
    except ImportError:
        return None
    vol = astra.create_vol_geom(*op.image_shape)
    pixel = op.pixel_size
    if isinstance(op, FanBeam2D):
        geometry = astra.create_proj_geom(
            "fanflat", op.detector_spacing / pixel, op.n_detectors, op.angles.numpy(),
            op.source_distance / pixel, op.detector_distance / pixel,
        )  # fmt: skip
        kind = "line_fanflat"
    else:
        geometry = astra.create_proj_geom("parallel", op.detector_spacing / pixel, op.n_detectors, op.angles.numpy())
        kind = "linear"
    w = astra.OpTomo(astra.create_projector(kind, geometry, vol))
    x = shepp_logan(op.image_shape[0]).numpy().astype("float32")
    y = (w * x.ravel()).reshape(op.range_shape).astype("float32")
    row = {
        "case": name,
        "method": f"ASTRA {astra.__version__} CPU '{kind}', image by image",
        "batch": 1,
        "forward ms/img": 1e3 * median_seconds(lambda: w * x.ravel(), repeats),
        "adjoint ms/img": 1e3 * median_seconds(lambda: w.T * y.ravel(), repeats),
    }
    if kind == "linear":
        row["fbp ms/img"] = 1e3 * median_seconds(lambda: w.reconstruct("FBP", y), repeats)
        row["noiseless FBP PSNR (ram-lak)"] = float(
            psnr(torch.from_numpy(w.reconstruct("FBP", y)), torch.from_numpy(x))
        )
    return row


def adjoint_mismatch(op, device) -> float:
    """|<A x, y> − <x, A* y>| / (‖A x‖ ‖y‖) in float32 for random x, y."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(op.domain_shape, generator=gen).to(device)
    y = torch.randn(op.range_shape, generator=gen).to(device)
    ax = op(x)
    return float(abs((ax * y).sum() - (x * op.H(y)).sum()) / (ax.norm() * y.norm()))


def run_operator_benchmark(
    cases: list[str], out: str | Path, repeats: int = 5, device: str = "cpu", astra: bool = True
) -> str:
    """Time ``cases`` (keys of :data:`CASES`), write the JSON and Markdown results into ``out``, return the table."""
    from learnrecon.errors import ParameterError

    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ParameterError(f"unknown operator benchmark case(s) {unknown}; choose from {', '.join(CASES)}")
    device = torch.device(device)
    rows = []
    for name in cases:
        ours = run_case(name, repeats, device)
        reference = astra_row(name, CASES[name](), repeats) if astra else None
        if reference is not None:
            astra_total = reference["forward ms/img"] + reference["adjoint ms/img"]
            for row in ours:
                row["speed-up fwd+adj vs ASTRA"] = astra_total / (row["forward ms/img"] + row["adjoint ms/img"])
            ours.append(reference)
        rows.extend(ours)
    info = machine_info(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tag = info.get("gpu", "cpu").replace(" ", "-")
    write_json(out / f"operators-{tag}.json", {"machine": info, "repeats": repeats, "rows": rows})
    columns = [
        "case", "method", "batch", "forward ms/img", "adjoint ms/img", "fbp ms/img", "build s", "matrix MB",
        "speed-up fwd+adj vs ASTRA", "adjoint mismatch", "noiseless FBP PSNR (ram-lak)",
    ]  # fmt: skip
    digits = {"forward ms/img": 3, "adjoint ms/img": 3, "fbp ms/img": 2, "speed-up fwd+adj vs ASTRA": 1}
    shown = [
        {k: (f"{v:.1e}" if k == "adjoint mismatch" else v) for k, v in row.items() if v is not None} for row in rows
    ]
    text = (
        f"# learnrecon ray transforms, float32, median of {repeats} runs after warm-up\n\n"
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), device {info['device']}. Command: "
        f"`learnrecon benchmark operators --cases {','.join(cases)} --repeats {repeats}`.\n\n"
        f"{markdown_table(shown, columns, digits=digits)}"
    )
    (out / f"operators-{tag}.md").write_text(text)
    return text
