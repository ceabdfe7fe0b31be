"""Training losses and the learning-rate schedule."""

import csv

import pytest
import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError
from learnrecon.training import Trainer, learning_rate
from learnrecon.training.losses import get_loss
from training_support import (
    small_config,
)


def test_the_psnr_loss_and_the_validation_psnr_are_the_same_metric(tmp_path):
    trainer = Trainer.from_config(small_config(steps=3, loss="psnr"), tmp_path, progress=False)
    trainer.train()
    row = list(csv.DictReader((tmp_path / "validation.csv").open()))[-1]
    assert float(row["loss"]) == pytest.approx(-float(row["psnr"]), rel=1e-6)


def test_cosine_learning_rate():
    assert learning_rate(0, 1e-3, 100, "cosine") == 1e-3
    assert learning_rate(50, 1e-3, 100, "cosine") == pytest.approx(5e-4)
    assert learning_rate(100, 1e-3, 100, "cosine") == pytest.approx(0.0)
    assert learning_rate(70, 1e-3, 100, "constant") == 1e-3


def test_psnr_loss_is_minus_the_mean_per_image_psnr_and_blind_to_each_images_scale():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    x_hat = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    loss = get_loss("psnr")(x_hat, x)
    assert torch.allclose(loss, -metrics.psnr(x_hat, x).mean())
    # one image ten times brighter, with ten times the error: mean PSNR, and the loss, do not change, MSE does
    scale = torch.tensor([10.0, 1.0, 1.0]).reshape(3, 1, 1, 1)
    assert torch.allclose(get_loss("psnr")(scale * x_hat, scale * x), loss)
    assert get_loss("mse")(scale * x_hat, scale * x) > 30 * get_loss("mse")(x_hat, x)
    # its gradient is MSE's, image by image, divided by that image's MSE (times 10/ln 10, over the batch of 3)
    loss.backward()
    err = (x_hat - x).detach()
    mse_b = err.pow(2).flatten(1).mean(1).reshape(3, 1, 1, 1)
    expected = (10 / torch.log(torch.tensor(10.0))) / 3 * (2 * err / err[0].numel()) / mse_b
    assert torch.allclose(x_hat.grad, expected, rtol=1e-4)


def test_ssim_loss_is_one_minus_the_benchmarks_mean_ssim_and_blind_to_each_images_scale():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    x_hat = x + 0.1 * torch.randn_like(x)
    loss = get_loss("ssim")(x_hat, x)
    assert torch.allclose(loss, 1 - metrics.ssim(x_hat, x).mean())
    scale = torch.tensor([4.0, 1.0, 0.5]).reshape(3, 1, 1, 1)  # raw ellipse sums have ranges of 0.8-2.0
    assert torch.allclose(get_loss("ssim")(scale * x_hat, scale * x), loss)


def test_an_unknown_loss_names_the_choices():
    with pytest.raises(ParameterError, match="unknown loss 'psnr2'.*mse, l1, ssim, psnr"):
        get_loss("psnr2")
