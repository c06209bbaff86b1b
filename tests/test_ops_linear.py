"""Parity of tinyconv.ops.linear_forward/backward with torch.nn.functional.linear.

tinyconv keeps the weight (in, out), the transpose of torch's, so torch is given weight.T.
"""

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import assert_close, numerical_gradient, torch64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")

# (batch, in_features, out_features)
SHAPES = {
    "all_ones": (1, 1, 1),
    "single_output": (1, 33, 1),
    "odd_small": (3, 5, 17),
    "batch_64_square": (64, 64, 64),
    "classifier_head": (64, 2048, 10),
    "wide_output": (3, 17, 300),
}


def tensors(rng, batch, inputs, outputs):
    x = rng.standard_normal((batch, inputs), dtype=np.float32)
    weight = rng.standard_normal((inputs, outputs), dtype=np.float32)
    bias = rng.standard_normal(outputs, dtype=np.float32)
    dy = rng.standard_normal((batch, outputs), dtype=np.float32)
    return x, weight, bias, dy


def torch_linear(x, weight, bias, dy):
    """torch's y, dx, dweight (in tinyconv's layout) and dbias, in float64."""
    tx, tw, tb = (torch64(a, requires_grad=True) for a in (x, weight, bias))
    y = F.linear(tx, tw.T, tb)
    y.backward(torch64(dy))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


def check_against_torch(x, weight, bias, dy):
    batch, inputs = x.shape
    outputs = weight.shape[1]
    y_ref, dx_ref, dw_ref, db_ref = torch_linear(x, weight, bias, dy)

    y = ops.linear_forward(x, weight, bias)
    dx, dw, db = ops.linear_backward(x, weight, dy)

    assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32
    assert_close(y, y_ref, reduction=inputs + 1)
    assert_close(dx, dx_ref, reduction=outputs)
    assert_close(dw, dw_ref, reduction=batch)
    assert_close(db, db_ref, reduction=batch)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_linear_matches_torch(rng, shape):
    check_against_torch(*tensors(rng, *shape))


def test_linear_forward_without_bias_into_out(rng):
    x, weight, bias, dy = tensors(rng, *SHAPES["odd_small"])
    expected = x.astype(np.float64) @ weight
    out = np.full(expected.shape, np.nan, dtype=np.float32)

    got = ops.linear_forward(x, weight, out=out)

    assert got is out
    assert_close(out, expected, reduction=x.shape[1])


def test_linear_backward_skips_the_gradients_not_asked_for(rng):
    x, weight, bias, dy = tensors(rng, *SHAPES["odd_small"])
    dw_ref = torch_linear(x, weight, bias, dy)[2]

    dx, dw, db = ops.linear_backward(x, weight, dy, input_grad=False, bias_grad=False)

    assert dx is None
    assert db is None
    assert_close(dw, dw_ref, reduction=x.shape[0])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 70), inputs=st.integers(1, 70), outputs=st.integers(1, 70),
       seed=st.integers(0, 2**32 - 1))
def test_linear_random_shapes(batch, inputs, outputs, seed):
    check_against_torch(*tensors(np.random.default_rng(seed), batch, inputs, outputs))


def test_linear_gradients_match_finite_differences(rng):
    x, weight, bias, _ = tensors(rng, 3, 4, 5)
    upstream = rng.standard_normal((3, 5))

    def loss():
        return np.sum(ops.linear_forward(x, weight, bias) * upstream)

    dx, dw, db = ops.linear_backward(x, weight, upstream.astype(np.float32))

    assert_close(dx, numerical_gradient(loss, x), rtol=1e-2)
    assert_close(dw, numerical_gradient(loss, weight), rtol=1e-2)
    assert_close(db, numerical_gradient(loss, bias), rtol=1e-2)
