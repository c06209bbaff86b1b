"""Parity of tinyconv.ops.softmax and softmax_cross_entropy with torch (F.softmax,
F.cross_entropy with its default mean reduction, and its autograd gradient)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, numerical_gradient, torch64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")

# (batch, classes, offset, spread): logits are offset + spread * N(0, 1). A large offset
# overflows exp() unless the row maximum is taken out first; a large spread underflows it.
CASES = {
    "one_class": (3, 1, 0.0, 1.0),
    "single_row": (1, 10, 0.0, 1.0),
    "odd_classes": (5, 17, 0.0, 3.0),
    "network_batch": (64, 10, 0.0, 1.0),
    "many_classes": (2, 1000, 0.0, 2.0),
    "large_positive_offset": (4, 10, 1000.0, 1.0),
    "large_negative_offset": (4, 10, -1000.0, 1.0),
    "large_spread_underflows": (4, 33, 0.0, 100.0),
}


def logits_and_labels(rng, batch, classes, offset, spread):
    logits = (offset + spread * rng.standard_normal((batch, classes))).astype(np.float32)
    labels = rng.integers(0, classes, size=batch)
    return logits, labels


def torch_loss(logits, labels):
    """torch's mean loss and its gradient, in float64."""
    z = torch64(logits, requires_grad=True)
    loss = F.cross_entropy(z, torch.from_numpy(labels))
    loss.backward()
    return loss.item(), z.grad.numpy()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_softmax_matches_torch(rng, case):
    logits, _ = logits_and_labels(rng, *case)
    expected = F.softmax(torch64(logits), dim=1).numpy()

    probs = ops.softmax(logits)

    assert probs.dtype == np.float32
    assert_close(probs, expected, reduction=logits.shape[1])


@pytest.mark.parametrize("in_place", [False, True], ids=["new_out", "in_place"])
def test_softmax_fills_out(rng, in_place):
    logits, _ = logits_and_labels(rng, *CASES["odd_classes"])
    expected = F.softmax(torch64(logits), dim=1).numpy()
    out = logits if in_place else np.full_like(logits, np.nan)

    got = ops.softmax(logits, out=out)

    assert got is out
    assert_close(out, expected, reduction=logits.shape[1])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_softmax_cross_entropy_matches_torch(rng, case):
    logits, labels = logits_and_labels(rng, *case)
    loss_ref, grad_ref = torch_loss(logits, labels)

    loss, grad = ops.softmax_cross_entropy(logits, labels)

    assert isinstance(loss, float)
    assert grad.dtype == np.float32
    assert_close(loss, loss_ref, reduction=logits.size)
    assert_close(grad, grad_ref, reduction=logits.shape[1])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 70), classes=st.integers(1, 40),
       spread=st.sampled_from([0.1, 1.0, 30.0]), seed=st.integers(0, 2**32 - 1))
def test_softmax_and_loss_random_shapes(batch, classes, spread, seed):
    logits, labels = logits_and_labels(np.random.default_rng(seed), batch, classes, 0.0, spread)
    loss_ref, grad_ref = torch_loss(logits, labels)

    probs = ops.softmax(logits)
    loss, grad = ops.softmax_cross_entropy(logits, labels)

    assert_close(probs, F.softmax(torch64(logits), dim=1).numpy(), reduction=classes)
    assert_close(loss, loss_ref, reduction=logits.size)
    assert_close(grad, grad_ref, reduction=classes)


def test_softmax_cross_entropy_gradient_matches_finite_differences(rng):
    logits, labels = logits_and_labels(rng, 3, 5, 0.0, 2.0)

    def loss():
        return ops.softmax_cross_entropy(logits, labels)[0]

    _, grad = ops.softmax_cross_entropy(logits, labels)

    assert_close(grad, numerical_gradient(loss, logits), rtol=1e-2)
