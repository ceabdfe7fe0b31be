"""Pre-log CT training pairs: phantoms and their photon counts (or the counts' log data), simulated on the fly."""

from __future__ import annotations

import torch

from learnrecon.data.simulate import sample_generator
from learnrecon.data.sources import Pairs, PhantomSource
from learnrecon.errors import ParameterError
from learnrecon.noise import poisson_counts
from learnrecon.operators.nonlinear import BeerLambert

__all__ = ["PrelogPairs"]


class PrelogPairs:
    """An endless stream like :class:`~learnrecon.data.sources.SimulatedPairs`: sample ``p`` is phantom ``p`` of
    ``seed`` and its counts ``N ~ Poisson(I₀ exp(−μ A x_p))`` drawn from ``(seed, p)`` (:func:`poisson_counts`);
    with ``log=True`` the post-log data ``op.log_data(N)`` of the same counts instead, for a post-log model."""

    def __init__(self, op: BeerLambert, phantom: PhantomSource, *, seed: int, log: bool = False) -> None:
        if not isinstance(op, BeerLambert):
            raise ParameterError(f"pre-log pairs need a BeerLambert operator, got {op!r}")
        self.op, self.phantom, self.seed, self.log = op, phantom, seed, log

    def indices(self, positions: torch.Tensor) -> list[int]:
        return positions.tolist()

    def batch(self, positions: torch.Tensor) -> Pairs:
        start, n = int(positions[0]), positions.numel()
        x = self.phantom.draw(n, self.op.domain_shape, seed=self.seed, start=start)
        with torch.no_grad():
            clean = self.op.ray(x)
        counts = torch.stack(
            [
                poisson_counts(clean[i], self.op.photons, self.op.mu_max, sample_generator(self.seed, start + i))
                for i in range(n)
            ]
        )
        return Pairs(x, self.op.log_data(counts) if self.log else counts)
