"""The one inference loop and the one metric convention (learnrecon.evaluation)."""

import pytest
import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError
from learnrecon.evaluation import DATA_RANGE, evaluate, mean_diagnostics, predict, predict_batches, score
from learnrecon.operators import MRI, Identity, cartesian_mask


def _noisy(n=3, size=16):
    x = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))
    return x, x + torch.tensor([0.01, 0.1, 0.3][:n]).reshape(n, 1, 1, 1) * noise


def test_the_convention_is_each_reference_images_own_range():
    x, y = _noisy()
    x = x * torch.tensor([1.0, 2.0, 5.0]).reshape(3, 1, 1, 1)
    assert DATA_RANGE == "image"
    scores = score(y, x)
    torch.testing.assert_close(scores.psnr, metrics.psnr(y, x))
    ranges = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).reshape(3)
    mse = (y - x).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(scores.psnr, 10 * torch.log10(ranges**2 / mse))
    torch.testing.assert_close(score(y, x, data_range=1.0).psnr, metrics.psnr(y, x, data_range=1.0))
    torch.testing.assert_close(scores.ssim, metrics.ssim(y, x))


def test_complex_images_are_scored_on_their_magnitudes():
    x, y = _noisy()
    phase = torch.exp(1j * torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2)))
    scores = score(y.abs() * phase, x * phase)
    torch.testing.assert_close(scores.psnr, metrics.psnr(y.abs(), x))


def test_predict_runs_in_eval_mode_without_gradients_in_batches_and_returns_cpu_images():
    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(()))
            self.calls = []

        def forward(self, y, op):
            self.calls.append((y.shape[0], self.training, torch.is_grad_enabled()))
            return op.H(y) * self.weight

    model = Probe().train()
    y = torch.randn(5, 1, 8, 8)
    x_hat = predict(model, y, Identity((8, 8)), batch_size=2)
    assert model.calls == [(2, False, False), (2, False, False), (1, False, False)]
    assert x_hat.device.type == "cpu" and x_hat.dtype == torch.float32 and not x_hat.requires_grad
    torch.testing.assert_close(x_hat, y)
    with pytest.raises(ParameterError, match="batch_size must be a positive integer"):
        predict(model, y, Identity((8, 8)), batch_size=0)


def test_predict_keeps_complex_images_complex():
    op = MRI(cartesian_mask((8, 8), 2))
    y = op(torch.randn(3, 1, 8, 8, dtype=torch.complex128))
    x_hat = predict(lambda y, op: op.pseudo_inverse(y), y, op)
    assert x_hat.dtype == torch.complex64
    torch.testing.assert_close(x_hat, op.H(y).to(torch.complex64))


def test_predict_batches_streams_one_batch_at_a_time():
    seen = []

    def batches():
        for i in range(3):
            seen.append(i)
            yield torch.full((2, 1, 4, 4), float(i))

    stream = predict_batches(lambda y, op: y + 1, batches(), Identity((4, 4)))
    first = next(stream)
    assert seen == [0] and float(first[0, 0, 0, 0]) == 1.0  # the second batch is not read yet
    assert [float(b[0, 0, 0, 0]) for b in stream] == [2.0, 3.0]


def test_evaluate_compares_each_reconstruction_with_its_own_truth_and_reports_diagnostics():
    x, y = _noisy()

    class Reporting(torch.nn.Module):
        def forward(self, y, op):
            self.n = y.shape[0]
            return y

        def diagnostics(self):
            return {"nonconverged_fraction": 1.0 if self.n == 1 else 0.0}

    result = evaluate(Reporting(), y, x, Identity((16, 16)), batch_size=2)
    torch.testing.assert_close(torch.tensor(result["psnr_per_image"]), metrics.psnr(y, x))
    assert result["psnr"] == pytest.approx(float(metrics.psnr(y, x).mean()), rel=1e-6)
    assert result["diagnostics"] == {"nonconverged_fraction": pytest.approx(1 / 3)}  # one of three samples
    assert "diagnostics" not in evaluate(lambda y, op: y, y, x, Identity((16, 16)))
    with pytest.raises(ParameterError, match="data_range must be 'image' or a positive number"):
        evaluate(lambda y, op: y, y, x, Identity((16, 16)), data_range=0)


def test_mean_diagnostics_weigh_batches_by_their_size():
    assert mean_diagnostics([(3, {"a": 1.0}), (1, {"a": 5.0, "b": 2.0})]) == {"a": 2.0, "b": 2.0}
