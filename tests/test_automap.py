"""AUTOMAP, the fully learned baseline: its size at the quick preset's geometry, its sizes from the operator or
given, the errors that name a wrong size, that it learns, and that the shipped weights reconstruct."""

import pytest
import torch

from learnrecon import phantoms
from learnrecon.data.simulate import measure
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.metrics import psnr
from learnrecon.models import AUTOMAP, SMALL_PARAMS, build_model, pretrained, pretrained_names
from learnrecon.operators import ParallelBeam2D

OP = ParallelBeam2D(32, 10)  # data (10, 47)


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_size_at_the_quick_presets_geometry_fits_the_shipping_budget():
    """128², 30 angles × 183 detectors: the paper's dense map would be 5490 × 16384 ≈ 90 M weights; the reduced
    one stays under 2.5 M parameters, 5 MB in float16."""
    op = ParallelBeam2D(128, 30, 183)
    model = build_model("automap", op=op)
    n = _n_parameters(model)
    assert n < 2_500_000 and 2 * n < 5_000_000
    assert model.dense1.in_features == 30 * 183 and model.dense2.out_features == 64 * 64
    assert n > 0.95 * (5490 * 192 + 192 * 4096)  # the dense layers are most of it


def test_built_from_the_operator_or_from_explicit_sizes_gives_the_same_model():
    torch.manual_seed(0)
    from_op = build_model("automap", {"hidden": 16, "width": 4}, op=OP)
    torch.manual_seed(0)
    explicit = build_model("automap", {"image_size": 32, "data_shape": [10, 47], "hidden": 16, "width": 4})
    assert {k: v.shape for k, v in from_op.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()
    }
    y = measure(OP, phantoms.random_ellipses(2, 32, seed=0), "relative:0.05", seed=0)
    with torch.no_grad():
        torch.testing.assert_close(from_op(y, OP), explicit(y, OP))
    assert from_op(y, OP).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("coarse", [1, 2, 4])
def test_every_coarse_factor_gives_the_full_image(coarse):
    model = AUTOMAP(image_size=32, data_shape=[10, 47], hidden=8, coarse=coarse, width=2)
    assert model(torch.zeros(3, 2, 10, 47), OP).shape == (3, 2, 32, 32)


def test_wrong_sizes_are_named():
    model = build_model("automap", SMALL_PARAMS["automap"])
    with pytest.raises(ShapeError, match=r"built for data of shape \(10, 47\), got .* data of shape \(12, 47\)"):
        model(torch.zeros(1, 1, 12, 47), ParallelBeam2D(32, 12))
    with pytest.raises(ShapeError, match=r"built for images of shape \(32, 32\), got .* images of shape \(24, 24\)"):
        model(torch.zeros(1, 1, 10, 47), ParallelBeam2D(24, 10, 47))
    with pytest.raises(ShapeError, match="measurements"):
        model(torch.zeros(1, 1, 10, 40), OP)
    with pytest.raises(ParameterError, match=r"give image_size and data_shape .* op=op"):
        build_model("automap")
    with pytest.raises(ParameterError, match="give data_shape"):
        AUTOMAP(image_size=32)
    with pytest.raises(ParameterError, match=r"data_shape=\[30, 183\] does not fit"):
        build_model("automap", {"data_shape": [30, 183]}, op=OP)
    with pytest.raises(ParameterError, match="multiples of coarse=3"):
        AUTOMAP(image_size=32, data_shape=[10, 47], coarse=3)


def test_it_fits_a_tiny_problem():
    torch.manual_seed(0)
    x = phantoms.random_ellipses(4, 32, seed=1, scaling="minmax")
    y = measure(OP, x, "relative:0.05", seed=1)
    model = build_model("automap", SMALL_PARAMS["automap"])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(y, OP), x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # 0.04 after 60 steps (2-core AMD EPYC), (losses[0], losses[-1])


def test_the_data_scale_is_divided_out():
    """The input is y/‖A‖: an operator scaled by c with its data scaled by c gives the same image."""
    model = build_model("automap", SMALL_PARAMS["automap"]).eval()
    y = measure(OP, phantoms.random_ellipses(1, 32, seed=2), "relative:0.05", seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(7.0 * y, OP * 7.0), model(y, OP), rtol=1e-4, atol=1e-5)


def test_the_shipped_weights_load_and_reconstruct_better_than_the_zero_image():
    assert "automap-ellipses" in pretrained_names()
    model = pretrained("automap-ellipses")
    assert model.provenance["model"]["name"] == "automap" and model.provenance["weights_dtype"] == "float16"
    op = ParallelBeam2D(128, 30, 183)
    x = phantoms.draw_ellipses("ellipses", n=4, size=128, seed=4321, scaling="none")
    y = measure(op, x, "relative:0.05", seed=4321)
    with torch.no_grad():
        x_hat = model(y, op)
    assert x_hat.shape == x.shape
    zero = float(psnr(torch.zeros_like(x), x).mean())
    assert float(psnr(x_hat, x).mean()) > zero + 2
