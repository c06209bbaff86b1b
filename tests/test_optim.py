"""SGD against torch.optim.SGD, and the learning-rate schedules."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_close

from tinyconv.model import cifar_cnn
from tinyconv.optim import SGD, make_schedule

SHAPES = {"0.weight": (4, 3, 3, 3), "0.bias": (4,), "1.weight": (12, 5), "1.bias": (5,)}


def random_params(rng):
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in SHAPES.items()}


def torch_sgd(params, lr, **options):
    """torch.optim.SGD over copies of params, biases in a group without weight decay."""
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    decayed = [t for name, t in tensors.items() if not name.endswith("bias")]
    biases = [t for name, t in tensors.items() if name.endswith("bias")]
    groups = [{"params": decayed}, {"params": biases, "weight_decay": 0.0}]
    return tensors, torch.optim.SGD(groups, lr=lr, **options)


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.9, True, 5e-4), (0.9, False, 5e-4), (0.5, True, 0.0), (0.0, False, 1e-2)])
def test_three_steps_match_torch_sgd(rng, momentum, nesterov, weight_decay):
    params = random_params(rng)
    tensors, reference = torch_sgd(params, 0.1, momentum=momentum, nesterov=nesterov,
                                   weight_decay=weight_decay)
    schedule = make_schedule("onecycle", 0.1, total_steps=3, warmup=0.5)
    ours = SGD(schedule, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    for step in range(3):
        grads = {name: rng.standard_normal(p.shape, dtype=np.float32)
                 for name, p in params.items()}
        ours.step([(name, params[name], grads[name]) for name in SHAPES])
        for group in reference.param_groups:
            group["lr"] = schedule(step)
        for name, tensor in tensors.items():
            tensor.grad = torch.from_numpy(grads[name])
        reference.step()

    for name, tensor in tensors.items():
        assert_close(params[name], tensor.detach().numpy(), rtol=1e-6)


def test_three_training_steps_of_the_cnn_match_torch(rng):
    net = cifar_cnn(seed=5)
    reference = net.to_torch()
    decayed = [p for name, p in reference.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in reference.named_parameters() if name.endswith("bias")]
    torch_optimiser = torch.optim.SGD(
        [{"params": decayed}, {"params": biases, "weight_decay": 0.0}],
        lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    optimiser = SGD(0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)

    for _ in range(3):
        x = rng.standard_normal((8, 3, 32, 32), dtype=np.float32)
        labels = rng.integers(0, 10, 8)
        net.loss_and_grad(x.copy(), labels)
        optimiser.step(net.parameters())
        torch_optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)),
                                                 torch.from_numpy(labels))
        loss.backward()
        torch_optimiser.step()

    expected = dict(reference.named_parameters())
    for name, param, _ in net.parameters():
        value = expected[name].detach().numpy()
        assert_close(param, value.T if param.ndim == 2 else value, rtol=1e-4)


def test_biases_are_decayed_only_when_asked(rng):
    bias = np.ones(3, np.float32)
    no_grad = np.zeros(3, np.float32)

    SGD(1.0, weight_decay=0.5).step([("0.bias", bias, no_grad)])
    assert np.array_equal(bias, np.ones(3))

    SGD(1.0, weight_decay=0.5, decay_biases=True).step([("0.bias", bias, no_grad)])
    assert np.array_equal(bias, np.full(3, 0.5))


def test_state_dict_restores_the_step_and_momentum(rng):
    params = random_params(rng)
    grads = [random_params(rng) for _ in range(3)]
    schedule = make_schedule("cosine", 0.1, total_steps=3)
    first = SGD(schedule, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for g in grads[:2]:
        first.step([(name, params[name], g[name]) for name in SHAPES])

    second = SGD(schedule, momentum=0.9, nesterov=True, weight_decay=1e-3)
    second.load_state_dict({key: value.copy() for key, value in first.state_dict().items()})
    resumed = {name: p.copy() for name, p in params.items()}
    first.step([(name, params[name], grads[2][name]) for name in SHAPES])
    second.step([(name, resumed[name], grads[2][name]) for name in SHAPES])

    assert second.steps == first.steps == 3
    for name in SHAPES:
        assert np.array_equal(resumed[name], params[name]), name


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        SGD(0.1, nesterov=True)


def test_constant_schedule_never_changes():
    schedule = make_schedule("constant", 0.05, total_steps=10)

    assert {schedule(step) for step in range(20)} == {0.05}


def test_cosine_schedule_starts_at_the_peak_halves_midway_and_ends_near_zero():
    schedule = make_schedule("cosine", 0.2, total_steps=100)

    assert schedule(0) == 0.2
    assert math.isclose(schedule(50), 0.1)
    assert 0 < schedule(99) < 1e-4
    assert schedule(150) == 0
    assert all(schedule(s + 1) < schedule(s) for s in range(99))


def test_onecycle_warms_up_linearly_for_its_fraction_then_decays():
    schedule = make_schedule("onecycle", 0.02, total_steps=200, warmup=0.15)
    lrs = [schedule(step) for step in range(200)]

    assert math.isclose(lrs[0], 0.02 / 30)
    assert math.isclose(lrs[29], 0.02) and math.isclose(lrs[30], 0.02)
    assert np.allclose(np.diff(lrs[:30]), 0.02 / 30)
    assert all(b < a for a, b in zip(lrs[30:], lrs[31:]))
    assert max(lrs) == 0.02 and lrs[-1] < 1e-5


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        make_schedule("step", 0.1, total_steps=10)
