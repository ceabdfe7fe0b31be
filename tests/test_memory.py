"""Memory-efficient training: the invertible learned primal-dual, greedy stages and greedy training, activation
memory, and training on random angle subsets."""

import itertools
import json
import math

import pytest
import torch

from learnrecon import phantoms
from learnrecon.config import from_dict
from learnrecon.data.simulate import measure
from learnrecon.errors import ParameterError
from learnrecon.models import InvertibleLearnedPrimalDual, LearnedPrimalDual, build_model
from learnrecon.models.invertible import InvertiblePrimalDualStep
from learnrecon.operators import ParallelBeam2D
from learnrecon.runtime import SavedTensors
from learnrecon.training import AngleSubsets, Trainer

OP = ParallelBeam2D(32, 12)


def _batch(n=2, seed=0, op=OP, dtype=torch.float32):
    x = phantoms.random_ellipses(n, op.domain_shape[-1], seed=seed, scaling="minmax").to(dtype)
    return x, measure(op, x, "relative:0.05", seed=seed).to(dtype)


def _randomised(model, std=0.1, seed=0):
    """``model`` with random weights everywhere (untrained couplings start at zero and are trivially invertible)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


@pytest.mark.parametrize(("n_primal", "n_dual"), [(2, 2), (5, 3), (6, 6)])
def test_each_step_inverts_exactly(n_primal, n_dual):
    torch.manual_seed(1)
    step = _randomised(InvertiblePrimalDualStep(n_primal, n_dual, width=8, depth=3), std=0.2)
    _, y = _batch()
    y = y.reshape(-1, 1, *OP.range_shape) / OP.norm()
    op = OP / OP.norm()
    f = torch.randn(y.shape[0], n_primal, *OP.domain_shape)
    h = torch.randn(y.shape[0], n_dual, *OP.range_shape)
    with torch.no_grad():
        f_out, h_out = step((f, h), y, op)
        f_back, h_back = step.inverse((f_out, h_out), y, op)
    assert (f_out - f).abs().max() > 1e-2 and (h_out - h).abs().max() > 1e-2  # the step does something
    scale = max(f.abs().max(), h.abs().max())
    assert float((f_back - f).abs().max() / scale) < 1e-5
    assert float((h_back - h).abs().max() / scale) < 1e-5


def test_whole_model_inverts_to_its_initial_state():
    model = _randomised(build_model("ilpd", {"n_iter": 5, "n_primal": 4, "n_dual": 4, "width": 8}))
    _, y = _batch()
    state0, y_work, op_work = model.prepare(y.reshape(-1, 1, *OP.range_shape), OP)
    state0 = (state0[0] + torch.randn_like(state0[0]), state0[1] + torch.randn_like(state0[1]))
    with torch.no_grad():
        state = model.run_steps(state0, y_work, op_work, 0, model.n_iter)
        back = model.invert(state, y_work, op_work)
    for a, b in zip(back, state0, strict=True):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


@pytest.mark.parametrize("share_weights", [False, True])
def test_gradients_equal_the_plain_computation(share_weights):
    """The memory-saving backward (inverses and recomputation) gives the gradients of the same network run
    plainly, for the weights and for the data."""
    params = {"n_iter": 4, "n_primal": 4, "n_dual": 3, "width": 6, "share_weights": share_weights}
    model = _randomised(build_model("ilpd", params).double())
    x, y = _batch(dtype=torch.float64)
    grads = {}
    for saving in (True, False):
        model.memory_saving = saving
        model.zero_grad()
        y_in = y.clone().requires_grad_(True)
        loss = (model(y_in, OP) - x).pow(2).sum()
        loss.backward()
        grads[saving] = ([p.grad.clone() for p in model.parameters()], y_in.grad.clone(), float(loss.detach()))
    assert grads[True][2] == pytest.approx(grads[False][2], rel=1e-12)
    for a, b in zip(grads[True][0], grads[False][0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads[True][1], grads[False][1], rtol=1e-9, atol=1e-12)


def test_gradients_in_float32_are_close_to_plain():
    model = _randomised(build_model("ilpd", {"n_iter": 10, "n_primal": 4, "n_dual": 4, "width": 8}), std=0.05)
    x, y = _batch()
    grads = {}
    for saving in (True, False):
        model.memory_saving = saving
        model.zero_grad()
        (model(y, OP) - x).pow(2).sum().backward()
        grads[saving] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float((grads[True] - grads[False]).norm() / grads[False].norm()) < 1e-4


def _saved_bytes(model, y, x):
    with SavedTensors() as saved:
        loss = (model(y, OP) - x).pow(2).mean()
    loss.backward()
    return saved.bytes


def test_activation_memory_is_flat_in_the_iterations():
    """What autograd keeps for the backward pass: invertible LPD the same at 2 and 8 iterations; plain LPD and the
    invertible one run plainly grow with the iterations. (Checkpointed LPD is measured in benchmarks/memory.py:
    torch's checkpoint packs its saved tensors with hooks of its own, which these counts do not see.)"""
    x, y = _batch()
    small = {"n_primal": 4, "n_dual": 4, "width": 8}
    memory = {}
    for n in (2, 8):
        memory["ilpd", n] = _saved_bytes(InvertibleLearnedPrimalDual(n, **small), y, x)
        memory["ilpd-plain", n] = _saved_bytes(InvertibleLearnedPrimalDual(n, memory_saving=False, **small), y, x)
        memory["lpd", n] = _saved_bytes(LearnedPrimalDual(n, **small), y, x)
    assert memory["ilpd", 8] <= 1.05 * memory["ilpd", 2]
    assert memory["ilpd-plain", 8] > 3 * memory["ilpd-plain", 2]
    assert memory["lpd", 8] > 3 * memory["lpd", 2]
    assert memory["ilpd", 8] < memory["lpd", 8] / 10


def test_ilpd_refuses_too_few_channels():
    with pytest.raises(ParameterError, match="n_primal >= 2 and n_dual >= 2"):
        InvertibleLearnedPrimalDual(3, n_primal=1, n_dual=4)


def test_ilpd_trains_one_batch_down():
    torch.manual_seed(0)
    model = build_model("ilpd", {"n_iter": 3, "n_primal": 4, "n_dual": 4, "width": 8})
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = (model(y, OP) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


# -- greedy stages ------------------------------------------------------------------------------------------


def test_greedy_stage_freezes_the_earlier_iterations_and_trains_one():
    model = _randomised(LearnedPrimalDual(4, n_primal=3, n_dual=3, width=6))
    x, y = _batch()
    model.set_greedy_stage(2)
    (model(y, OP) - x).pow(2).mean().backward()
    for k, step in enumerate(model.steps):
        grads = [p.grad for p in step.parameters()]
        if k == 2:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:  # frozen (0, 1) or not run (3)
            assert all(g is None for g in grads)
            assert all(p.requires_grad == (k > 2) for p in step.parameters())
    model.set_greedy_stage(None)
    assert all(p.requires_grad for p in model.parameters())


def test_greedy_stage_equals_the_full_model_while_later_steps_are_untrained():
    model = LearnedPrimalDual(4, n_primal=3, n_dual=3, width=6)
    _randomised(model.steps[:2])  # steps 2 and 3 untrained: their last layers are zero
    _, y = _batch()
    with torch.no_grad():
        full = model(y, OP)
        model.set_greedy_stage(1)
        stage = model(y, OP)
    torch.testing.assert_close(stage, full)


def test_greedy_stage_keeps_one_iteration_of_activations():
    x, y = _batch()
    model = LearnedPrimalDual(8, n_primal=3, n_dual=3, width=8)
    full = _saved_bytes(model, y, x)
    model.set_greedy_stage(7)
    assert _saved_bytes(model, y, x) < full / 4


def test_greedy_stage_needs_separate_steps():
    model = LearnedPrimalDual(3, share_weights=True)
    with pytest.raises(ParameterError, match="share_weights=False"):
        model.set_greedy_stage(0)
    with pytest.raises(ParameterError, match="greedy stage 3"):
        LearnedPrimalDual(3).set_greedy_stage(3)


# -- greedy training and angle subsets in the trainer ------------------------------------------------------

TRAIN = {
    "model": {"name": "lpd", "params": {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4}},
    "data": {
        "operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 8, "n_detectors": 35},
        "n_validation": 2,
    },
    "training": {
        "steps": 6,
        "batch_size": 2,
        "validate_every": 3,
        "checkpoint_every": 3,
        "figure_every": 100,
        "log_every": 1,
        "threads": 1,
        "lr": 1e-2,
    },
}


def _train_config(**training):
    values = json.loads(json.dumps(TRAIN))
    values["training"].update(training)
    return from_dict(values)


def _step_weights(model, k):
    return [p.detach().clone() for p in model.steps[k].parameters()]


def test_greedy_training_trains_one_iteration_a_stage_then_all(tmp_path):
    trainer = Trainer.from_config(_train_config(greedy_steps=2), tmp_path / "run", progress=False)
    model = trainer.model
    assert [trainer.stage(s)[0] for s in range(6)] == [0, 0, 1, 1, None, None]
    start = [_step_weights(model, k) for k in range(2)]
    trainer.train(until=2)  # stage 0: iteration 0 trains, iteration 1 is not run
    after_0 = [_step_weights(model, k) for k in range(2)]
    assert any(not torch.equal(a, b) for a, b in zip(after_0[0], start[0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(after_0[1], start[1], strict=True))
    trainer.train(until=4)  # stage 1: iteration 0 frozen, iteration 1 trains
    after_1 = [_step_weights(model, k) for k in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(after_1[0], after_0[0], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(after_1[1], after_0[1], strict=True))
    trainer.train()  # end-to-end fine-tune: both train
    done = [_step_weights(model, k) for k in range(2)]
    for k in range(2):
        assert any(not torch.equal(a, b) for a, b in zip(done[k], after_1[k], strict=True))
    assert model.active_iterations is None and all(p.requires_grad for p in model.parameters())
    trainer.close()


def test_greedy_training_resumes_to_the_same_weights(tmp_path):
    whole = Trainer.from_config(_train_config(greedy_steps=2), tmp_path / "whole", progress=False)
    whole.train()
    whole.close()
    part = Trainer.from_config(_train_config(greedy_steps=2, steps=6), tmp_path / "part", progress=False)
    part.train(until=3)
    part.close()
    again = Trainer.from_config(_train_config(greedy_steps=2), tmp_path / "part", resume=True, progress=False)
    again.train()
    again.close()
    for a, b in zip(whole.model.parameters(), again.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_greedy_training_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ParameterError, match="fewer than the greedy stages need"):
        Trainer.from_config(_train_config(greedy_steps=4), tmp_path / "a", progress=False)
    values = json.loads(json.dumps(TRAIN))
    values["model"] = {"name": "fbpconvnet", "params": {"depth": 1, "width": 4}}
    values["training"]["greedy_steps"] = 1
    with pytest.raises(ParameterError, match="greedy_steps applies to unrolled models"):
        Trainer.from_config(from_dict(values), tmp_path / "b", progress=False)
    with pytest.raises(ParameterError, match="greedy_steps must be >= 0"):
        Trainer.from_config(_train_config(greedy_steps=-1), tmp_path / "c", progress=False)


def test_subsampled_data_term_is_unbiased():
    """Over all m-subsets, the mean of the rescaled data term and of its gradient are the full operator's."""
    op = ParallelBeam2D(16, 6, n_detectors=23)
    source = AngleSubsets(op, 2 / 6)
    assert source.n_subset == 2
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.rand(1, 1, 6, 23, generator=g, dtype=torch.float64)
    full_term = (op(x) - y).pow(2).sum()
    full_grad = op.H(op(x) - y)
    terms, grads = [], []
    for pair in itertools.combinations(range(6), 2):
        idx = torch.tensor(pair)
        op_s = source.operator_for(idx)
        y_s = y.index_select(-2, idx) * op_s.scalar
        terms.append((op_s(x) - y_s).pow(2).sum())
        grads.append(op_s.H(op_s(x) - y_s))
    torch.testing.assert_close(torch.stack(terms).mean(), full_term)
    torch.testing.assert_close(torch.stack(grads).mean(0), full_grad)
    assert source.operator_for(torch.tensor([0, 3])).norm() == op.norm()


def test_angle_subsets_per_step_are_random_uniform_and_reproducible():
    op = ParallelBeam2D(16, 8, n_detectors=23)
    source = AngleSubsets(op, 0.25, seed=3)
    y = torch.rand(2, 1, 8, 23)
    op_s, y_s = source.for_step(5, y)
    assert op_s.range_shape == (2, 23) and y_s.shape == (2, 1, 2, 23)
    torch.testing.assert_close(y_s, y[:, :, source.indices(5)] * 2.0)
    assert torch.equal(source.indices(5), AngleSubsets(op, 0.25, seed=3).indices(5))
    counts = torch.zeros(8)
    for step in range(4000):
        counts[source.indices(step)] += 1
    assert float((counts / 1000 - 1).abs().max()) < 0.1  # each angle in a quarter of the steps
    assert not op._cache.get(("subset", tuple(source.indices(5).tolist())))  # random subsets are not cached
    with pytest.raises(ParameterError, match="angle_fraction must lie in"):
        AngleSubsets(op, 1.5)


def test_subset_pseudo_inverse_is_on_the_full_data_scale():
    op = ParallelBeam2D(32, 40)
    x = phantoms.random_ellipses(1, 32, seed=0, scaling="minmax")
    source = AngleSubsets(op, 0.5)
    op_s, y_s = source.for_step(0, op(x))
    full, part = op.pseudo_inverse(op(x)), op_s.pseudo_inverse(y_s)
    assert float((part - full).norm() / full.norm()) < 0.35
    assert float(part.mean() / full.mean()) == pytest.approx(1.0, abs=0.05)


def test_trainer_with_angle_fraction_trains_on_subsets_and_validates_on_all(tmp_path):
    trainer = Trainer.from_config(_train_config(angle_fraction=0.25, steps=3), tmp_path / "run", progress=False)
    assert isinstance(trainer.op_source, AngleSubsets) and trainer.op is trainer.op_source.operator
    op_s, y_s = trainer._step_operator(torch.rand(2, 1, 8, 35), {})
    assert op_s.range_shape == (2, 35) and y_s.shape[-2] == 2
    summary = trainer.train()
    trainer.close()
    assert summary["steps"] == 3 and math.isfinite(summary["best_psnr"])
    with pytest.raises(ParameterError, match="angle_fraction must lie in"):
        Trainer.from_config(_train_config(angle_fraction=0.0), tmp_path / "bad", progress=False)


def test_ilpd_trains_with_the_trainer_and_resumes_to_the_same_weights(tmp_path):
    values = json.loads(json.dumps(TRAIN))
    values["model"] = {"name": "ilpd", "params": {"n_iter": 3, "n_primal": 2, "n_dual": 2, "width": 4}}
    config = from_dict(values)
    whole = Trainer.from_config(config, tmp_path / "whole", progress=False)
    whole.train()
    whole.close()
    part = Trainer.from_config(config, tmp_path / "part", progress=False)
    part.train(until=3)
    part.close()
    again = Trainer.from_config(config, tmp_path / "part", resume=True, progress=False)
    again.train()
    again.close()
    for a, b in zip(whole.model.parameters(), again.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_ilpd_with_activation_checkpointing_gives_the_same_gradients():
    model = _randomised(build_model("ilpd", {"n_iter": 3, "n_primal": 4, "n_dual": 4, "width": 6}).double())
    x, y = _batch(dtype=torch.float64)
    grads = []
    for checkpointed in (False, True):
        model.checkpoint_activations = checkpointed
        model.zero_grad()
        (model(y, OP) - x).pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)
