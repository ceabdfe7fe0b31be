"""Symmetries of parallel-beam geometries (A g = T_g A) and the symmetry average of a reconstructor."""

import math

import pytest
import torch

from learnrecon.models.ensemble import SymmetryAverage
from learnrecon.operators import FanBeam2D, Identity, ParallelBeam2D
from learnrecon.operators.symmetry import IDENTITY
from learnrecon.solvers import fbp

ALL_EIGHT = [(k, reflect) for reflect in (False, True) for k in range(4)]
EVEN_TURNS = [(0, False), (2, False), (0, True), (2, True)]


def elements(op):
    return [(g.turns, g.reflect) for g in op.symmetries()]


def random_images(shape, seed=0):
    return torch.rand(2, 1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "op",
    [
        ParallelBeam2D(24, 12),
        ParallelBeam2D(24, 8, n_detectors=41, detector_spacing=0.7),
        ParallelBeam2D(16, angles=torch.arange(8) * math.pi / 4 + 0.3),  # over [0.3, 2π + 0.3)
        ParallelBeam2D((12, 20), 9),
    ],
    ids=["12 angles", "other detector", "full turn", "odd, not square"],
)
def test_symmetries_carry_images_to_permuted_data(op):
    x = random_images(op.image_shape)
    data = op(x)
    group = op.symmetries()
    assert len(group) >= 2  # the identity and the half turn, at least
    for g in group:
        torch.testing.assert_close(op(g.image(x)), g.data(data), rtol=0, atol=1e-12)
        torch.testing.assert_close(g.image_inverse(g.image(x)), x, rtol=0, atol=0)


@pytest.mark.parametrize(
    "op, expected",
    [
        (ParallelBeam2D(16, 30), ALL_EIGHT),
        (ParallelBeam2D(16, 45), EVEN_TURNS),
        (ParallelBeam2D((16, 24), 30), EVEN_TURNS),
        (ParallelBeam2D(16, angles=[0.1, 0.5, 1.3]), [(0, False), (2, False)]),
    ],
    ids=["30 angles", "45 angles", "not square", "irregular angles"],
)
def test_symmetries_are_those_the_geometry_admits(op, expected):
    assert elements(op) == expected
    identity = op.symmetries()[0]
    assert identity.source.tolist() == list(range(op.angles.numel())) and not identity.reverse.any()


def test_an_operator_that_knows_no_symmetries_offers_the_identity_and_its_average_is_the_model():
    from learnrecon.models import FBPConvNet

    for op in (FanBeam2D(16, 12, 25, 40.0, 20.0), Identity((8, 8))):
        assert op.symmetries() == [IDENTITY]
        y = torch.randn(2, 1, *op.range_shape)
        assert op.symmetries()[0].data(y) is y and op.symmetries()[0].image(y).equal(y)
    op = FanBeam2D(16, 12, 25, 40.0, 20.0)
    model = FBPConvNet(depth=1, width=4).eval()
    y = op(random_images(op.image_shape).float())
    with torch.no_grad():
        torch.testing.assert_close(SymmetryAverage(model)(y, op), model(y, op))


class FBPPlus(torch.nn.Module):
    """FBP plus a fixed image: equivariant only without the image."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def forward(self, y, op):
        return fbp(y, op, "hann") + self.offset


def test_symmetry_average_keeps_an_equivariant_method_and_averages_the_rest():
    op = ParallelBeam2D(24, 12)
    y = op(random_images(op.image_shape))
    offset = random_images(op.image_shape, seed=1)[:1]
    torch.testing.assert_close(SymmetryAverage(FBPPlus(0.0))(y, op), fbp(y, op, "hann"), rtol=0, atol=1e-10)
    group = op.symmetries()
    averaged_offset = sum(g.image_inverse(offset) for g in group) / len(group)
    torch.testing.assert_close(SymmetryAverage(FBPPlus(offset))(y, op), fbp(y, op, "hann") + averaged_offset)


def test_a_symmetry_needs_every_angle_to_map_onto_an_angle():
    """Angles 0 and π/2 map onto each other under the quarter turns and reflections, 0.3 does not: only the
    identity and the half turn are admitted, and they keep A g = T_g A."""
    op = ParallelBeam2D(16, angles=[0.0, math.pi / 2, 0.3])
    assert elements(op) == [(0, False), (2, False)]
    x = random_images(op.image_shape)
    for g in op.symmetries():
        torch.testing.assert_close(op(g.image(x)), g.data(op(x)), rtol=0, atol=1e-12)


def _act(z, turns, reflect):
    z = torch.rot90(z, turns, (-2, -1))
    return z.flip(-1) if reflect else z


def _undo(z, turns, reflect):
    return torch.rot90(z.flip(-1) if reflect else z, -turns, (-2, -1))


@pytest.mark.parametrize("shape, group", [((16, 16), ALL_EIGHT), ((12, 20), EVEN_TURNS)], ids=["square", "not square"])
def test_dihedral_image_average_is_equivariant_whatever_the_network(shape, group):
    """A random convolution is not equivariant; its average over the grid's symmetries (all eight on a square
    grid, the four that keep a rectangle otherwise) is, to every one of them."""
    from learnrecon.models.ensemble import dihedral_image_average

    net = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64)
    x = random_images(shape)
    with torch.no_grad():
        averaged = dihedral_image_average(net, x)
        expected = sum(_undo(net(_act(x, k, r)), k, r) for k, r in group) / len(group)
        torch.testing.assert_close(averaged, expected, rtol=0, atol=1e-12)
        assert (net(x.flip(-1)) - net(x).flip(-1)).abs().max() > 1e-3
        for k, r in group:
            torch.testing.assert_close(
                dihedral_image_average(net, _act(x, k, r)), _act(averaged, k, r), rtol=0, atol=1e-12
            )


def test_a_symmetric_fbpconvnet_is_equivariant_to_the_geometry_and_learns():
    """With ``symmetric=True`` the whole FBPConvNet commutes with the symmetries of the geometry,
    ``x(T_g y) = g x(y)`` (FBP does, and the averaged U-Net does); the same weights without it do not."""
    from learnrecon.models import FBPConvNet

    op = ParallelBeam2D(16, 8)
    torch.manual_seed(0)
    model = FBPConvNet(depth=1, width=4, symmetric=True).eval()
    plain = FBPConvNet(depth=1, width=4).eval()
    plain.load_state_dict(model.state_dict())
    y = op(random_images(op.image_shape).float())
    with torch.no_grad():
        x = model(y, op)
        for g in op.symmetries():
            torch.testing.assert_close(model(g.data(y), op), g.image(x), rtol=0, atol=1e-5)
        reflect = op.symmetries()[4]
        assert (plain(reflect.data(y), op) - reflect.image(plain(y, op))).abs().max() > 1e-3
    model.train()
    model(y, op).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())
