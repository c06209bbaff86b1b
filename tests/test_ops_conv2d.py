"""Parity of tinyconv.ops.conv2d_forward/backward with torch.nn.functional.conv2d."""

from typing import NamedTuple, Union

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import assert_close, numerical_gradient, torch64
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")

IntOrPair = Union[int, tuple]


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


class Conv(NamedTuple):
    batch: int
    channels: int
    height: int
    width: int
    filters: int
    kernel: IntOrPair
    stride: IntOrPair = 1
    padding: IntOrPair = 0

    @property
    def out_size(self):
        (kh, kw), (sh, sw), (ph, pw) = pair(self.kernel), pair(self.stride), pair(self.padding)
        return (self.height + 2 * ph - kh) // sh + 1, (self.width + 2 * pw - kw) // sw + 1

    def tensors(self, rng):
        """Random x, weight, bias and an upstream gradient dy."""
        kh, kw = pair(self.kernel)
        x = rng.standard_normal((self.batch, self.channels, self.height, self.width),
                                dtype=np.float32)
        weight = rng.standard_normal((self.filters, self.channels, kh, kw), dtype=np.float32)
        bias = rng.standard_normal(self.filters, dtype=np.float32)
        dy = rng.standard_normal((self.batch, self.filters, *self.out_size), dtype=np.float32)
        return x, weight, bias, dy

    def reference(self, x, weight, bias, dy):
        """torch's y, dx, dweight, dbias in float64."""
        tx, tw = torch64(x, requires_grad=True), torch64(weight, requires_grad=True)
        tb = None if bias is None else torch64(bias, requires_grad=True)
        y = F.conv2d(tx, tw, tb, stride=self.stride, padding=self.padding)
        y.backward(torch64(dy))
        # The bias gradient does not depend on there being a bias.
        db = dy.sum(axis=(0, 2, 3), dtype=np.float64) if tb is None else tb.grad.numpy()
        return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), db

    @property
    def reductions(self):
        """Terms summed per element of y, dx and dweight (dbias sums as many as dweight)."""
        kh, kw = pair(self.kernel)
        sh, sw = pair(self.stride)
        oh, ow = self.out_size
        per_input = self.filters * -(-kh // sh) * -(-kw // sw)
        return self.channels * kh * kw + 1, per_input, self.batch * oh * ow


# Together these give every batch (1, 3, 64), channel count (1, 3, 5, 16, 17, 64), kernel
# (1, 3, 5), stride (1, 2) and padding (0, 1, 2) the issue asks for, on spatial sizes from 1 to
# 33, each paired with several of the others; the ids name the edge each one covers.
CASES = {
    "single_pixel_kernel_1": Conv(1, 1, 1, 1, 1, 1),
    "single_pixel_kernel_5_fills_padding_2": Conv(1, 3, 1, 1, 5, 5, 1, 2),
    "single_pixel_stride_2_padding_1": Conv(3, 1, 1, 1, 3, 3, 2, 1),
    "kernel_equals_input": Conv(3, 5, 5, 5, 16, 5),
    "kernel_1_stride_2_odd_input": Conv(3, 16, 9, 9, 17, 1, 2),
    "kernel_3_same_padding_33": Conv(1, 3, 33, 33, 16, 3, 1, 1),
    "kernel_3_stride_2_padding_1_odd": Conv(3, 17, 17, 17, 17, 3, 2, 1),
    "kernel_5_stride_2_padding_2_even": Conv(3, 5, 16, 16, 5, 5, 2, 2),
    "stride_leaves_last_row_unused": Conv(3, 3, 12, 12, 3, 5, 2, 0),
    "padding_2_grows_output": Conv(3, 3, 4, 4, 3, 3, 1, 2),
    "one_to_64_channels": Conv(3, 1, 10, 10, 64, 3),
    "64_to_1_channels_stride_2": Conv(1, 64, 11, 11, 1, 3, 2, 1),
    "17_channels_odd_unequal_sides": Conv(3, 17, 15, 13, 17, 3, 1, 1),
    "column_33x1_kernel_3x1": Conv(3, 5, 33, 1, 3, (3, 1), 1, (1, 0)),
    "row_1x33_kernel_1x3": Conv(1, 16, 1, 33, 5, (1, 3), 1, (0, 1)),
    "unequal_kernel_stride_padding": Conv(2, 3, 7, 12, 5, (3, 5), (1, 2), (2, 1)),
    "batch_64_stride_2_kernel_5": Conv(64, 3, 13, 13, 5, 5, 2, 2),
    "network_layer_1": Conv(64, 3, 32, 32, 16, 3, 1, 1),
    "network_layer_3": Conv(64, 32, 16, 16, 64, 3, 1, 1),
}


def check_against_torch(conv, x, weight, bias, dy):
    y_ref, dx_ref, dw_ref, db_ref = conv.reference(x, weight, bias, dy)
    fwd, per_input, per_weight = conv.reductions

    y = ops.conv2d_forward(x, weight, bias, stride=conv.stride, padding=conv.padding)
    dx, dw, db = ops.conv2d_backward(x, weight, dy, stride=conv.stride, padding=conv.padding)

    assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32
    assert_close(y, y_ref, reduction=fwd)
    assert_close(dx, dx_ref, reduction=per_input)
    assert_close(dw, dw_ref, reduction=per_weight)
    assert_close(db, db_ref, reduction=per_weight)


@pytest.mark.parametrize("conv", CASES.values(), ids=CASES.keys())
def test_conv2d_matches_torch(rng, conv):
    check_against_torch(conv, *conv.tensors(rng))


@pytest.mark.parametrize("conv", [CASES["kernel_3_stride_2_padding_1_odd"],
                                  CASES["unequal_kernel_stride_padding"]],
                         ids=["square", "unequal"])
def test_conv2d_forward_without_bias(rng, conv):
    x, weight, _, dy = conv.tensors(rng)
    y_ref = conv.reference(x, weight, None, dy)[0]

    y = ops.conv2d_forward(x, weight, stride=conv.stride, padding=conv.padding)

    assert_close(y, y_ref, reduction=conv.reductions[0])


def test_conv2d_backward_skips_the_gradients_not_asked_for(rng):
    conv = CASES["kernel_3_stride_2_padding_1_odd"]
    x, weight, bias, dy = conv.tensors(rng)
    _, _, dw_ref, _ = conv.reference(x, weight, bias, dy)

    dx, dw, db = ops.conv2d_backward(x, weight, dy, stride=conv.stride, padding=conv.padding,
                                     input_grad=False, bias_grad=False)

    assert dx is None
    assert db is None
    assert_close(dw, dw_ref, reduction=conv.reductions[2])


def test_conv2d_forward_fills_out(rng):
    conv = CASES["17_channels_odd_unequal_sides"]
    x, weight, bias, dy = conv.tensors(rng)
    y_ref = conv.reference(x, weight, bias, dy)[0]
    out = np.full(y_ref.shape, np.nan, dtype=np.float32)

    got = ops.conv2d_forward(x, weight, bias, stride=conv.stride, padding=conv.padding, out=out)

    assert got is out
    assert_close(out, y_ref, reduction=conv.reductions[0])


def test_conv2d_one_and_two_threads_agree(rng, num_threads):
    conv = CASES["network_layer_3"]
    x, weight, bias, dy = conv.tensors(rng)
    fwd, per_input, per_weight = conv.reductions

    def run():
        y = ops.conv2d_forward(x, weight, bias, padding=1)
        return (y, *ops.conv2d_backward(x, weight, dy, padding=1))

    num_threads(1)
    one = run()
    num_threads(2)
    two = run()

    for a, b, reduction in zip(one, two, (fwd, per_input, per_weight, per_weight)):
        assert_close(a, b, reduction=reduction)


@st.composite
def random_convs(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 14))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 14))
    return Conv(
        batch=draw(st.integers(1, 4)),
        channels=draw(st.integers(1, 9)),
        height=height,
        width=width,
        filters=draw(st.integers(1, 9)),
        kernel=kernel,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=padding,
    )


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conv=random_convs(), with_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_random_shapes(conv, with_bias, seed):
    assume(all(size >= 1 for size in conv.out_size))
    x, weight, bias, dy = conv.tensors(np.random.default_rng(seed))

    check_against_torch(conv, x, weight, bias if with_bias else None, dy)


def test_conv2d_gradients_match_finite_differences(rng):
    conv = Conv(2, 2, 5, 6, 3, 3, 2, 1)
    x, weight, bias, _ = conv.tensors(rng)
    upstream = rng.standard_normal((conv.batch, conv.filters, *conv.out_size))

    def loss():
        y = ops.conv2d_forward(x, weight, bias, stride=conv.stride, padding=conv.padding)
        return np.sum(y * upstream)

    dx, dw, db = ops.conv2d_backward(x, weight, upstream.astype(np.float32),
                                     stride=conv.stride, padding=conv.padding)

    assert_close(dx, numerical_gradient(loss, x), rtol=1e-2)
    assert_close(dw, numerical_gradient(loss, weight), rtol=1e-2)
    assert_close(db, numerical_gradient(loss, bias), rtol=1e-2)
