"""Parity of tinyconv.ops.maxpool2d_forward/backward with torch.nn.functional.max_pool2d."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, numerical_gradient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def overlaps(kernel_size, stride):
    """How many windows can share one input element."""
    (kh, kw), (sh, sw) = pair(kernel_size), pair(stride)
    return -(-kh // sh) * -(-kw // sw)


def torch_pool(x, dy_seed, kernel_size, stride):
    """torch's y, indices, a random upstream dy and the dx it gives, all float32."""
    tx = torch.from_numpy(x.copy()).requires_grad_()
    y, indices = F.max_pool2d(tx, kernel_size, stride, return_indices=True)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y.shape), dtype=np.float32)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), indices.numpy(), dy, tx.grad.numpy()


def check_against_torch(x, kernel_size, stride):
    effective_stride = kernel_size if stride is None else stride
    y_ref, indices_ref, dy, dx_ref = torch_pool(x, 7, kernel_size, effective_stride)

    y, indices = ops.maxpool2d_forward(x, kernel_size=kernel_size, stride=stride)
    dx = ops.maxpool2d_backward(dy, indices, x.shape, kernel_size=kernel_size, stride=stride)

    assert y.dtype == np.float32
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, indices_ref)
    np.testing.assert_array_equal(y, y_ref)
    shared = overlaps(kernel_size, effective_stride)
    if shared == 1:
        np.testing.assert_array_equal(dx, dx_ref)
    else:
        # Overlapping windows add up in an order that may differ from torch's.
        assert_close(dx, dx_ref, reduction=shared)


# (batch, channels, height, width, kernel_size, stride): every batch and channel count of the
# issue, sizes from 1 to 33, and windows that tile, overlap, leave gaps or drop a remainder.
CASES = {
    "single_pixel_kernel_1": (1, 1, 1, 1, 1, None),
    "kernel_1_is_identity": (1, 3, 5, 5, 1, None),
    "kernel_2_even_sides": (3, 16, 32, 32, 2, None),
    "kernel_2_drops_odd_row_and_column": (3, 5, 33, 17, 2, None),
    "kernel_equals_input": (3, 5, 5, 5, 5, None),
    "kernel_3_stride_2_overlap": (3, 17, 15, 15, 3, 2),
    "kernel_3_stride_1_overlap": (1, 3, 9, 11, 3, 1),
    "kernel_2_stride_3_gaps": (3, 3, 13, 13, 2, 3),
    "unequal_kernel_and_stride": (2, 3, 9, 12, (2, 3), (1, 2)),
    "channels_64_odd_sides": (3, 64, 7, 7, 2, None),
    "network_pool_1": (64, 32, 32, 32, 2, None),
    "network_pool_2": (64, 128, 16, 16, 2, None),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_maxpool2d_matches_torch(rng, case):
    *shape, kernel_size, stride = case
    x = rng.standard_normal(shape, dtype=np.float32)

    check_against_torch(x, kernel_size, stride)


@pytest.mark.parametrize("kernel_size, stride", [(2, None), (3, 2)], ids=["tiled", "overlap"])
def test_maxpool2d_ties_pick_the_first_like_torch(rng, kernel_size, stride):
    x = rng.integers(-1, 2, size=(2, 3, 9, 10)).astype(np.float32)
    x[0, 0] = 0.0
    x[0, 1] = -np.inf

    check_against_torch(x, kernel_size, stride)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    height=st.integers(3, 20),
    width=st.integers(3, 20),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool2d_random_shapes(batch, channels, height, width, kernel, stride, seed):
    x = np.random.default_rng(seed).standard_normal((batch, channels, height, width),
                                                    dtype=np.float32)

    check_against_torch(x, kernel, stride)


def test_maxpool2d_gradient_matches_finite_differences(rng):
    # Distinct values 0.1 apart: a step of 0.01 never changes which element is the maximum.
    shape = (2, 2, 7, 6)
    x = (rng.permutation(np.prod(shape)).reshape(shape) * 0.1).astype(np.float32)
    _, indices = ops.maxpool2d_forward(x, kernel_size=3, stride=2)
    upstream = rng.standard_normal(indices.shape)

    def loss():
        return np.sum(ops.maxpool2d_forward(x, kernel_size=3, stride=2)[0] * upstream)

    dx = ops.maxpool2d_backward(upstream.astype(np.float32), indices, x.shape, kernel_size=3,
                                stride=2)

    assert_close(dx, numerical_gradient(loss, x), rtol=1e-2)
