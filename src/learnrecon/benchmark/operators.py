"""Time learnrecon's ray transforms: forward, adjoint and FBP per image, build time and matrix memory.

Run by ``learnrecon benchmark operators [--cases a,b,c,fan] [--repeats 5] [--no-astra] [--out DIR]`` or
``python benchmarks/operators.py`` (same options); writes ``operators-<device>.json`` and ``.md``.
When ASTRA is installed (``pip install astra-toolbox``) its CPU projector ('linear' for parallel beam,
'line_fanflat' for fan beam) is timed in the same process, image by image (it has no batching), with the
speed-up of learnrecon over it. Each case runs in a fresh process (ASTRA in the same one), so the peak
memory reported for it is its own: on CPU the process's peak resident memory right after building the
matrices ("build peak") and at the end ("peak"), on CUDA ``torch.cuda.max_memory_allocated``.
When DeepInverse is installed its ``Tomography`` (parallel beam, exact autograd adjoint, its default) is
timed in the same process on the same image size and angles, at batch 1 and 16 (batch 1 only at case c,
where it needs gigabytes of interpolation grids); its FBP is ``Tomography.fbp`` (its ``A_dagger`` is a
least-squares solve). Its wheels need a torchvision built for the installed torch: ``pip install deepinv``
into an environment whose torch and torchvision match (see docs/operators.md).
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from pathlib import Path

import torch

from learnrecon.metrics import psnr
from learnrecon.operators import FanBeam2D, ParallelBeam2D
from learnrecon.operators.base import adjoint_mismatch
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
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up, waiting for the GPU's queued work."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: resident (CPU, Linux/macOS units handled) or CUDA allocated."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if peak > 2**32 else peak / 2**10  # bytes on macOS, KiB on Linux


def run_case(name: str, repeats: int, device: torch.device) -> list[dict]:
    op = CASES[name]()
    start = time.perf_counter()
    op._matrices(torch.float32, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    build = time.perf_counter() - start
    build_peak = peak_memory_mb(device)
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
                "build peak MB": build_peak,
                "adjoint mismatch": random_adjoint_mismatch(op, device),
                "noiseless FBP PSNR (ram-lak)": fbp_psnr,
            }
        )
    for row in rows:
        row["peak MB"] = peak_memory_mb(device)
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


#: Batches timed for DeepInverse per case (its per-image time does not fall with the batch on CPU).
DEEPINV_BATCHES = {"a": (1, 16), "b": (1, 16), "c": (1,)}


def deepinv_rows(name: str, op, repeats: int) -> list[dict]:
    """DeepInverse's ``Tomography`` on the image size and angles of ``op`` (its own detector count): times,
    construction time ("build s") and the size of its cached interpolation grids ("matrix MB")."""
    if not isinstance(op, ParallelBeam2D) or name not in DEEPINV_BATCHES:
        return []
    try:
        import deepinv
        from deepinv.physics import Tomography
    except ImportError:
        return []
    size = op.image_shape[0]
    start = time.perf_counter()
    physics = Tomography(angles=torch.rad2deg(op.angles).float(), img_width=size, circle=False, normalize=False)
    build = time.perf_counter() - start
    grids_mb = sum(b.numel() * b.element_size() for b in physics.buffers()) / 2**20
    x1 = shepp_logan(size).float()[None, None]
    y1 = physics.A(x1)
    gen = torch.Generator().manual_seed(0)
    xr, yr = torch.randn(x1.shape, generator=gen), torch.randn(y1.shape, generator=gen)
    axr = physics.A(xr)
    mismatch = float(abs((axr * yr).sum() - (xr * physics.A_adjoint(yr)).sum()) / (axr.norm() * yr.norm()))
    rows = []
    for batch in DEEPINV_BATCHES[name]:
        x = x1.expand(batch, 1, size, size).contiguous()
        y = physics.A(x)
        rows.append(
            {
                "case": name,
                "method": f"DeepInverse {deepinv.__version__} Tomography",
                "batch": batch,
                "forward ms/img": 1e3 * median_seconds(lambda x=x: physics.A(x), repeats) / batch,
                "adjoint ms/img": 1e3 * median_seconds(lambda y=y: physics.A_adjoint(y), repeats) / batch,
                "fbp ms/img": 1e3 * median_seconds(lambda y=y: physics.fbp(y), repeats) / batch,
                "build s": build,
                "matrix MB": grids_mb,
                "adjoint mismatch": mismatch,
                "noiseless FBP PSNR (ram-lak)": float(psnr(physics.fbp(y1)[0, 0], x1[0, 0])),
            }
        )
    return rows


def random_adjoint_mismatch(op, device) -> float:
    """The dot-product test (:func:`~learnrecon.operators.base.adjoint_mismatch`) in float32 for random x, y."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(op.domain_shape, generator=gen).to(device)
    y = torch.randn(op.range_shape, generator=gen).to(device)
    return adjoint_mismatch(op, x, y)


def _fwd_adj(row: dict) -> float:
    return row["forward ms/img"] + row["adjoint ms/img"]


def case_rows(name: str, repeats: int, device: str, astra: bool, deepinv: bool = True) -> list[dict]:
    """learnrecon's rows for case ``name``, ASTRA's and DeepInverse's when asked and installed, with the
    speed-ups of learnrecon over them (per image; over DeepInverse at the same batch)."""
    ours = run_case(name, repeats, torch.device(device))
    reference = astra_row(name, CASES[name](), repeats) if astra else None
    peers = deepinv_rows(name, CASES[name](), repeats) if deepinv else []
    for row in ours:
        if reference is not None:
            row["forward speed-up vs ASTRA"] = reference["forward ms/img"] / row["forward ms/img"]
            row["adjoint speed-up vs ASTRA"] = reference["adjoint ms/img"] / row["adjoint ms/img"]
            row["speed-up fwd+adj vs ASTRA"] = _fwd_adj(reference) / _fwd_adj(row)
        same_batch = [peer for peer in peers if peer["batch"] == row["batch"]]
        if same_batch:
            row["speed-up fwd+adj vs DeepInverse"] = _fwd_adj(same_batch[0]) / _fwd_adj(row)
    return ours + ([reference] if reference is not None else []) + peers


def run_operator_benchmark(
    cases: list[str],
    out: str | Path,
    repeats: int = 5,
    device: str = "cpu",
    astra: bool = True,
    deepinv: bool = True,
    overwrite: bool = False,
) -> str:
    """Time ``cases`` (keys of :data:`CASES`), write the JSON and Markdown results into ``out``, return the table.

    The files are ``operators-<device>.json`` and ``.md``; existing ones are refused, before any timing,
    unless ``overwrite``.
    """
    from learnrecon.errors import ParameterError
    from learnrecon.io.files import atomic_path, check_output_path

    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ParameterError(f"unknown operator benchmark case(s) {unknown}; choose from {', '.join(CASES)}")
    device = torch.device(device)
    info = machine_info(device)
    tag = info.get("gpu", "cpu").replace(" ", "-")
    paths = {suffix: Path(out) / f"operators-{tag}.{suffix}" for suffix in ("json", "md")}
    for path in paths.values():
        check_output_path(path, overwrite, create_parents=False)
    rows = []
    spawn = multiprocessing.get_context("spawn")  # a fresh process per case: its peak memory is its own
    for name in cases:
        with spawn.Pool(1) as pool:
            rows.extend(pool.apply(case_rows, (name, repeats, str(device), astra, deepinv)))
    with atomic_path(paths["json"], overwrite) as tmp:
        write_json(tmp, {"machine": info, "repeats": repeats, "rows": rows})
    columns = [
        "case", "method", "batch", "forward ms/img", "adjoint ms/img", "fbp ms/img", "build s", "matrix MB",
        "build peak MB", "peak MB", "forward speed-up vs ASTRA", "adjoint speed-up vs ASTRA",
        "speed-up fwd+adj vs ASTRA", "speed-up fwd+adj vs DeepInverse", "adjoint mismatch",
        "noiseless FBP PSNR (ram-lak)",
    ]  # fmt: skip
    speed_ups = [c for c in columns if "speed-up" in c]
    digits = {"forward ms/img": 3, "adjoint ms/img": 3, "fbp ms/img": 2, "build peak MB": 0, "peak MB": 0}
    digits.update(dict.fromkeys(speed_ups, 1))
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
    with atomic_path(paths["md"], overwrite) as tmp:
        tmp.write_text(text)
    return text
