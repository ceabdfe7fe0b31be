"""Can the results be trusted? Worst-case perturbations and other instabilities (:mod:`.attack`), uncertainty
by ensembles, Monte-Carlo dropout, data resampling and Langevin sampling (:mod:`.uncertainty`), and the
calibration of that uncertainty (:mod:`.calibration`)."""

from learnrecon.robustness.attack import (
    AttackResult,
    add_detail,
    attack_summary,
    detail_recovery,
    worst_case_perturbation,
)

__all__ = [
    "AttackResult",
    "add_detail",
    "attack_summary",
    "detail_recovery",
    "worst_case_perturbation",
]
