"""Can the results be trusted? Worst-case perturbations and other instabilities (:mod:`.attack`), uncertainty
by ensembles, Monte-Carlo dropout, data resampling and Langevin sampling (:mod:`.uncertainty`), and the
calibration of that uncertainty (:mod:`.calibration`). See docs/robustness.md."""

from learnrecon.robustness.attack import (
    AttackResult,
    add_detail,
    attack_summary,
    detail_recovery,
    penalised_perturbation,
    worst_case_perturbation,
)
from learnrecon.robustness.calibration import calibration_report, coverage, recalibration_factor
from learnrecon.robustness.uncertainty import (
    Ensemble,
    UncertainReconstruction,
    denoiser_prior,
    gaussian_prior,
    langevin_sample,
    mc_dropout,
    resample_data,
    tv_prior,
)

__all__ = [
    "AttackResult",
    "Ensemble",
    "UncertainReconstruction",
    "add_detail",
    "attack_summary",
    "calibration_report",
    "coverage",
    "denoiser_prior",
    "detail_recovery",
    "gaussian_prior",
    "langevin_sample",
    "mc_dropout",
    "penalised_perturbation",
    "recalibration_factor",
    "resample_data",
    "tv_prior",
    "worst_case_perturbation",
]
