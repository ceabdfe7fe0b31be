"""Benchmark presets: the geometry, noise, data sizes and method settings of each reference comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """One benchmark setup (REFERENCES.md, "LGD/LPD ellipses" unless stated).

    Attributes:
        name: preset name used on the command line.
        description: one line for the report.
        image_size: image side in pixels (the image covers [-size/2, size/2]², pixel size 1).
        n_angles: parallel-beam angles, uniform in [0, π).
        n_detectors: detector pixels (183 covers the diagonal of a 128² image).
        noise: noise spec (see :func:`learnrecon.data.parse_noise`).
        simulation_size: simulate the data on this finer grid (None: the image grid).
        simulation_upsampling: the phantoms on that grid, "render" (drawn again on it) or "bilinear" (the
            images bilinearly upsampled to it, as the DIVal ellipse data set does).
        phantom: the validation and test ellipses, "ellipses" (Adler & Öktem's) or "dival-ellipses" (DIVal's);
            see :func:`learnrecon.phantoms.draw_ellipses`.
        ellipse_scaling: intensities of "ellipses", "none" (the raw sum, as in Adler & Öktem's code; the
            shipped models are trained on these) or "minmax" (each rescaled to [0, 1]); see
            :func:`learnrecon.phantoms.random_ellipses`.
        n_validation: ellipse images used to tune the classical methods' parameters.
        n_test: held-out ellipse images evaluated (Shepp–Logan is always evaluated too).
        fbp_filter: the FBP filter.
        fbp_frequency_scalings: the FBP cut-offs (fractions of Nyquist) tried on the validation data of each
            test set, as DIVal tunes its FBP; one value: no tuning.
        tv_lambdas: the coarse log-grid searched for the TV weight (extended past a winning edge, then refined).
        tv_iterations: PDHG iterations for TV.
        seed: base seed; validation data use ``seed + 1``, test data ``seed + 2``.
        pretrained: shipped models evaluated (see :func:`learnrecon.models.pretrained_names`).
        checkpoints: checkpoints of the user's (``.safetensors`` paths) evaluated beside them, with the preset's
            operator (``learnrecon benchmark --checkpoint PATH``).
        train_model, train_params: the model trained from scratch during the benchmark (None: none); by
            default the shipped LPD's configuration, FBP as its initial image.
        train_minutes, train_steps: its budget (whichever ends first); the learning rate is constant.
        train_batch_size: its batch size.
        reproduce: training configs (YAML paths, or the names of configs shipped in ``learnrecon/configs/``)
            trained to completion in ``runs_dir/<config name>``, resuming whatever is there, and evaluated at
            their best validation checkpoint (the full reproduction).
        runs_dir: where the ``reproduce`` runs live (they outlive the benchmark's output folder).
        sweep_noise, sweep_angles: a robustness sweep instead of the comparison (:mod:`.sweeps`): the relative
            noise levels (at ``n_angles``) and the numbers of angles (at ``noise``) every method is evaluated at.
        tv_tuning_iterations: PDHG iterations while a sweep tunes TV's weight at each point.
        learned_regularisers: learned-regulariser methods (``learnrecon reconstruct --method`` names: ar, acr,
            pnp-pgd, pnp-admm, hqs, red) evaluated with their shipped weights and tuned parameters.
    """

    name: str
    description: str
    image_size: int = 128
    n_angles: int = 30
    n_detectors: int = 183
    noise: str = "relative:0.05"
    simulation_size: int | None = None
    simulation_upsampling: str = "render"
    phantom: str = "ellipses"
    ellipse_scaling: str = "none"
    n_validation: int = 4
    n_test: int = 100
    fbp_filter: str = "hann"
    fbp_frequency_scalings: tuple[float, ...] = (1.0,)
    tv_lambdas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
    tv_iterations: int = 1000
    seed: int = 0
    pretrained: tuple[str, ...] = ("fbpconvnet-ellipses", "lgd-ellipses", "lpd-ellipses")
    checkpoints: tuple[str, ...] = ()
    train_model: str | None = "lpd"
    train_params: tuple[tuple[str, object], ...] = (("init", "fbp"),)
    train_minutes: float = 4.0
    train_steps: int = 100_000
    train_batch_size: int = 5
    reproduce: tuple[str, ...] = ()
    runs_dir: str = "runs/paper"
    sweep_noise: tuple[float, ...] = ()
    sweep_angles: tuple[int, ...] = ()
    tv_tuning_iterations: int = 300
    learned_regularisers: tuple[str, ...] = ()

    @property
    def is_sweep(self) -> bool:
        """Whether the preset is a robustness sweep (:mod:`learnrecon.benchmark.sweeps`)."""
        return bool(self.sweep_noise or self.sweep_angles)

    def operator_section(self) -> dict[str, Any]:
        """The preset's operator as a config section: the parallel-beam ray transform of ``image_size``²,
        ``n_angles`` uniform in [0, π) and ``n_detectors``."""
        return {
            "type": "ParallelBeam2D",
            "image_size": self.image_size,
            "n_angles": self.n_angles,
            "n_detectors": self.n_detectors,
        }

    def operator(self) -> LinearOperator:
        """The operator of the preset (:meth:`operator_section`)."""
        return build_operator(self.operator_section())


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick",
        "LGD/LPD ellipses setup: 128², 30 angles, 183 detectors, 5% relative Gaussian noise; test on Shepp–Logan "
        "and 100 held-out ellipses as drawn by Adler & Öktem's code (background 0, not rescaled)",
    ),
    "paper": Preset(
        "paper",
        "the full reproduction of the LGD/LPD ellipses setup: FBPConvNet, LGD and LPD trained with the package's "
        "configs fbpconvnet_paper.yaml, lgd_paper.yaml and lpd_paper.yaml (100k steps each; resumable: run the same "
        "command again to go on)",
        pretrained=(),
        train_model=None,
        reproduce=("fbpconvnet_paper.yaml", "lgd_paper.yaml", "lpd_paper.yaml"),
    ),
    "dival": Preset(
        "dival",
        "DIVal ellipses setup (Baguer et al. 2020): DIVal's random ellipses (background 0, values in [0, 1]), "
        "128², 30 angles, 183 detectors, 2.5% relative Gaussian noise, data simulated from the images bilinearly "
        "upsampled to 400² as DIVal does (no inverse crime), FBP cut-off tuned as DIVal tunes it; test on "
        "Shepp–Logan and 100 held-out ellipses. The shipped FBPConvNet, "
        "LGD and LPD were trained on the LGD/LPD setup (Adler & Öktem's ellipses, 5% noise, data from the "
        "reconstruction grid), so on these data they are evaluated out of their training distribution; the "
        "shipped LPD adapted to DIVal is that LPD trained further on these data "
        "(configs/lpd_dival_from_ellipses.yaml), the shipped FBPConvNet adapted to DIVal a width-16 U-Net trained so "
        "(configs/fbpconvnet_dival_w16_from_ellipses.yaml)",
        noise="relative:0.025",
        pretrained=("fbpconvnet-ellipses", "fbpconvnet-dival", "lgd-ellipses", "lpd-ellipses", "lpd-dival"),
        simulation_size=400,
        simulation_upsampling="bilinear",
        phantom="dival-ellipses",
        fbp_frequency_scalings=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
    ),
    "robustness": Preset(
        "robustness",
        "robustness sweeps of the quick preset's methods, the shipped models as shipped (trained at 5 % noise, 30 "
        "angles): relative Gaussian noise 0.5 … 20 % at 30 angles, and 10 … 180 angles at 5 % noise; Shepp–Logan "
        "and 3 held-out ellipses per point, TV (500 PDHG iterations) with λ tuned per point on 2 validation "
        "ellipses (150 iterations)",
        n_validation=2,
        n_test=3,
        tv_lambdas=(0.3, 1.0, 3.0, 10.0),
        tv_iterations=500,
        tv_tuning_iterations=150,
        train_model=None,
        sweep_noise=(0.005, 0.02, 0.05, 0.1, 0.2),
        sweep_angles=(10, 20, 30, 60, 180),
    ),
    "paradigms": Preset(
        "paradigms",
        "the four paradigms of learned reconstruction side by side on the quick preset's data (128², 30 angles, 5% "
        "noise; Shepp–Logan and 100 held-out ellipses): fully learned (AUTOMAP), learned post-processing "
        "(FBPConvNet), learned iterative schemes (LGD, LPD) and learned regularisers (the adversarial regulariser "
        "AR, the adversarial convex regulariser ACR, plug-and-play PGD/ADMM/HQS and RED with a learned denoiser), "
        "beside FBP and TV; every learned model shipped, none trained here",
        pretrained=("automap-ellipses", "fbpconvnet-ellipses", "lgd-ellipses", "lpd-ellipses"),
        train_model=None,
        learned_regularisers=("ar", "acr", "pnp-pgd", "pnp-admm", "hqs", "red"),
    ),
    "smoke": Preset(
        "smoke",
        "a seconds-long check of the pipeline: 64², 20 angles, 5% noise, 4 test ellipses",
        image_size=64,
        n_angles=20,
        n_detectors=91,
        n_validation=2,
        n_test=4,
        tv_lambdas=(0.3, 3.0),
        tv_iterations=100,
        train_params=(("n_iter", 2), ("width", 8), ("init", "fbp")),
        train_steps=4,
        train_batch_size=2,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (raises :class:`ParameterError` listing the known presets)."""
    if name not in PRESETS:
        raise ParameterError(
            f"unknown benchmark preset {name!r}; choose one of {', '.join(PRESETS)} (or an MRI preset: mri, mri-smoke, "
            "learnrecon.benchmark.mri)"
        )
    return PRESETS[name]
