"""Symmetries of a parallel-beam geometry: the quarter turns and reflections of the image grid that the
ray transform carries to permutations of the data.

For an orthogonal map ``L`` of the plane and the image ``(g x)(t) = x(L⁻¹ t)``,

    (A g x)(θ, s) = ∫ x(L⁻¹ t) δ(t·u_θ − s) dt = (A x)(ψ, s),    u_ψ = Lᵀ u_θ,

with ``u_θ = (cos θ, sin θ)`` the detector axis (:mod:`learnrecon.operators.tomography`), and
``(A x)(ψ + π, s) = (A x)(ψ, −s)``. When each ``ψ`` is one of the operator's angles up to a half turn, the
data of ``g x`` are those of ``x`` with the angles permuted and some rows reversed along the detector
(whose cells sit symmetrically about the centre): ``A g = T_g A``. The native (Joseph) operator keeps this
exactly (to rounding), because ``g`` maps the centred pixel grid onto itself, and ASTRA's to its float32
rounding (both tested).

``g`` is ``turns`` quarter turns counter-clockwise on screen (``torch.rot90(x, turns, (-2, -1))``, row 0 at
the top), then, if ``reflect``, the columns reversed (``x ↦ −x``): the eight elements of the square's
dihedral group, the odd turns only on square images. Uniformly spaced angles over [0, π) admit all
eight when their number is even, the four with even turns when it is odd; a half turn is always
admitted.

An operator offers its symmetries through ``op.symmetries()`` (only the identity, :data:`IDENTITY`, unless it
knows more: :class:`~learnrecon.operators.tomography.ParallelBeam2D` computes them with
:func:`parallel_beam_symmetries`), so this module knows no operator class.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

__all__ = [
    "IDENTITY",
    "Symmetry",
    "act_on_image",
    "act_on_image_inverse",
    "parallel_beam_symmetries",
]


class Symmetry(NamedTuple):
    """One image symmetry ``g`` and its action ``T_g`` on the data (``A g x = T_g A x``).

    ``source`` (n_angles,) long and ``reverse`` (n_angles,) bool: row ``m`` of ``T_g y`` is row
    ``source[m]`` of ``y``, reversed along the detector where ``reverse[m]``; both None for the identity of
    any operator (``T_g y = y``).
    """

    turns: int
    reflect: bool
    source: torch.Tensor | None
    reverse: torch.Tensor | None

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """``g x`` for images ``(*batch, H, W)``."""
        return act_on_image(x, self.turns, self.reflect)

    def image_inverse(self, x: torch.Tensor) -> torch.Tensor:
        """``g⁻¹ x`` for images ``(*batch, H, W)``."""
        return act_on_image_inverse(x, self.turns, self.reflect)

    def data(self, y: torch.Tensor) -> torch.Tensor:
        """``T_g y`` for data ``(*batch, n_angles, n_detectors)``."""
        if self.source is None:
            return y
        rows = y[..., self.source.to(y.device), :]
        return torch.where(self.reverse.to(y.device)[:, None], rows.flip(-1), rows)


#: The identity of every operator's data and images.
IDENTITY = Symmetry(0, False, None, None)


def act_on_image(x: torch.Tensor, turns: int, reflect: bool) -> torch.Tensor:
    """``g x`` for images ``(*batch, H, W)``: ``turns`` quarter turns, then the columns reversed if ``reflect``."""
    x = torch.rot90(x, turns, (-2, -1))
    return x.flip(-1) if reflect else x


def act_on_image_inverse(x: torch.Tensor, turns: int, reflect: bool) -> torch.Tensor:
    """``g⁻¹ x`` for images ``(*batch, H, W)`` (:func:`act_on_image` undone)."""
    x = x.flip(-1) if reflect else x
    return torch.rot90(x, -turns, (-2, -1))


def _linear_map(turns: int, reflect: bool) -> torch.Tensor:
    """The 2×2 matrix ``L`` of ``g`` on the plane (x to the right, y up)."""
    c, s = round(math.cos(turns * math.pi / 2)), round(math.sin(turns * math.pi / 2))
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    reflection = torch.diag(torch.tensor([-1.0 if reflect else 1.0, 1.0], dtype=torch.float64))
    return reflection @ rotation


def _data_action(angles: torch.Tensor, turns: int, reflect: bool, tol: float) -> Symmetry | None:
    """``T_g`` of a parallel-beam geometry with ``angles``, or None where some ``ψ`` is not one of the angles
    up to a half turn."""
    axes = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (A, 2) u_θ
    pulled = axes @ _linear_map(turns, reflect)  # rows u_θᵀ L = (Lᵀ u_θ)ᵀ = u_ψ
    gap = pulled[:, None, :] - axes[None, :, :]  # (A, A, 2): u_ψm − u_θj
    same = gap.abs().amax(dim=-1) < tol  # u_ψ = u_θj
    opposite = (gap + 2 * axes[None]).abs().amax(dim=-1) < tol  # u_ψ = −u_θj: the row of θ_j, reversed
    found = same | opposite
    if not bool(found.any(dim=1).all()):
        return None
    source = found.to(torch.int8).argmax(dim=1)
    reverse = ~same.gather(1, source[:, None]).squeeze(1)
    return Symmetry(turns, reflect, source, reverse)


def parallel_beam_symmetries(angles: torch.Tensor, image_shape: tuple[int, int], tol: float = 1e-9) -> list[Symmetry]:
    """The elements of the square's dihedral group that a parallel-beam geometry of ``angles`` (radians) on an
    ``image_shape`` grid admits, the identity first: at least the identity and the half turn.

    ``tol``: how close two detector axes (unit vectors) must be to count as the same angle.
    """
    height, width = image_shape
    turns = range(4) if height == width else (0, 2)
    actions = (_data_action(angles, k, reflect, tol) for reflect, k in itertools.product((False, True), turns))
    return [action for action in actions if action is not None]
