"""Bad input is refused with a message naming the argument; edge input (an empty batch, NaN,
infinities) gives the right result without a crash; the GIL is released while a kernel runs."""

import math
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch64

from tinyconv import ops


def f32(*shape):
    return np.ones(shape, dtype=np.float32)


def read_only(a):
    a.flags.writeable = False
    return a


def strided(a):
    """A view of `a` that is not C-contiguous (every other column)."""
    return np.concatenate([a, a], axis=-1)[..., ::2]


def overlapping_pair(*shape):
    """Two C-contiguous float32 arrays of one shape whose memory overlaps in part."""
    size = int(np.prod(shape))
    buffer = f32(size + 1)
    return buffer[1:].reshape(shape), buffer[:-1].reshape(shape)


def bad(case_id, error, pattern, call):
    return pytest.param(call, error, pattern, id=case_id)


# Arguments each case below gets right, so that only the one under test is wrong.
X, W, B, DY = f32(2, 3, 6, 6), f32(4, 3, 3, 3), f32(4), f32(2, 4, 4, 4)
POOL_DY, POOL_INDICES = f32(2, 3, 3, 3), np.zeros((2, 3, 3, 3), dtype=np.int64)
LX, LW, LB, LDY = f32(5, 7), f32(7, 3), f32(3), f32(5, 3)
LOGITS, LABELS = f32(4, 10), np.arange(4, dtype=np.int64)
SQUARE = f32(2, 2)
PAIR_2X2 = overlapping_pair(2, 2)
PAIR_8 = overlapping_pair(8)
PAIR_LOGITS = overlapping_pair(4, 10)
IMAGE_4X4 = f32(1, 1, 4, 4)


def conv_fwd(x=X, weight=W, bias=B, **kwargs):
    return ops.conv2d_forward(x, weight, bias, **kwargs)


def conv_bwd(x=X, weight=W, dy=DY, **kwargs):
    return ops.conv2d_backward(x, weight, dy, **kwargs)


def pool_bwd(dy=POOL_DY, indices=POOL_INDICES, input_shape=(2, 3, 6, 6), **kwargs):
    return ops.maxpool2d_backward(dy, indices, input_shape, **kwargs)


def loss(logits=LOGITS, labels=LABELS):
    return ops.softmax_cross_entropy(logits, labels)


BAD_CALLS = [
    # matmul
    bad("matmul_a_list", TypeError, r"\ba\b.*ndarray", lambda: ops.matmul([[1.0]], f32(1, 1))),
    bad("matmul_a_int32", TypeError, r"\ba\b.*dtype",
        lambda: ops.matmul(np.ones((2, 2), np.int32), SQUARE)),
    bad("matmul_b_float64", TypeError, r"\bb\b.*dtype",
        lambda: ops.matmul(SQUARE, np.ones((2, 2)))),
    bad("matmul_a_1d", ValueError, r"\ba\b.*2-D", lambda: ops.matmul(f32(2), SQUARE)),
    bad("matmul_b_3d", ValueError, r"\bb\b.*2-D", lambda: ops.matmul(SQUARE, f32(2, 2, 2))),
    bad("matmul_inner_sizes_differ", ValueError, r"op\(a\).*op\(b\)",
        lambda: ops.matmul(f32(2, 3), f32(4, 2))),
    bad("matmul_a_transposed_view", ValueError, r"\ba\b.*contiguous",
        lambda: ops.matmul(f32(3, 2).T, f32(3, 2))),
    bad("matmul_b_every_other_column", ValueError, r"\bb\b.*contiguous",
        lambda: ops.matmul(SQUARE, strided(SQUARE))),
    bad("matmul_out_read_only", ValueError, r"out.*(read-only|writeable)",
        lambda: ops.matmul(SQUARE, SQUARE, out=read_only(f32(2, 2)))),
    bad("matmul_out_wrong_shape", ValueError, r"out.*shape",
        lambda: ops.matmul(SQUARE, SQUARE, out=f32(2, 3))),
    bad("matmul_out_float64", TypeError, r"out.*dtype",
        lambda: ops.matmul(SQUARE, SQUARE, out=np.ones((2, 2)))),
    bad("matmul_out_every_other_column", ValueError, r"out.*contiguous",
        lambda: ops.matmul(SQUARE, SQUARE, out=strided(f32(2, 2)))),
    bad("matmul_out_is_a", ValueError, r"out.*overlap",
        lambda: ops.matmul(SQUARE, f32(2, 2), out=SQUARE)),
    bad("matmul_out_overlaps_b", ValueError, r"out.*overlap",
        lambda: ops.matmul(SQUARE, PAIR_2X2[0], out=PAIR_2X2[1])),
    bad("matmul_accumulate_without_out", ValueError, r"accumulate.*out",
        lambda: ops.matmul(SQUARE, SQUARE, accumulate=True)),
    bad("matmul_result_size_overflows", ValueError, r"result",
        lambda: ops.matmul(np.empty((2**40, 0), np.float32), np.empty((0, 2**40), np.float32))),
    # conv2d_forward
    bad("conv_x_list", TypeError, r"\bx\b.*ndarray", lambda: conv_fwd(x=X.tolist())),
    bad("conv_x_float64", TypeError, r"\bx\b.*dtype", lambda: conv_fwd(x=X.astype(np.float64))),
    bad("conv_weight_int64", TypeError, r"weight.*dtype",
        lambda: conv_fwd(weight=W.astype(np.int64))),
    bad("conv_bias_float64", TypeError, r"bias.*dtype",
        lambda: conv_fwd(bias=B.astype(np.float64))),
    bad("conv_x_3d", ValueError, r"\bx\b.*4-D", lambda: conv_fwd(x=X[0])),
    bad("conv_weight_5d", ValueError, r"weight.*4-D", lambda: conv_fwd(weight=W[None])),
    bad("conv_x_every_other_column", ValueError, r"\bx\b.*contiguous",
        lambda: conv_fwd(x=strided(X))),
    bad("conv_weight_transposed_view", ValueError, r"weight.*contiguous",
        lambda: conv_fwd(weight=f32(3, 4, 3, 3).transpose(1, 0, 2, 3))),
    bad("conv_weight_channels_differ_from_x", ValueError, r"weight.*channels",
        lambda: conv_fwd(weight=f32(4, 2, 3, 3))),
    bad("conv_bias_length_differs_from_filters", ValueError, r"bias",
        lambda: conv_fwd(bias=f32(5))),
    bad("conv_bias_2d", ValueError, r"bias", lambda: conv_fwd(bias=f32(4, 1))),
    bad("conv_kernel_larger_than_padded_input", ValueError, r"kernel",
        lambda: conv_fwd(weight=f32(4, 3, 9, 9), padding=1)),
    bad("conv_kernel_taller_than_padded_input", ValueError, r"kernel",
        lambda: conv_fwd(weight=f32(4, 3, 7, 1))),
    bad("conv_stride_0", ValueError, r"stride", lambda: conv_fwd(stride=0)),
    bad("conv_stride_negative", ValueError, r"stride", lambda: conv_fwd(stride=-1)),
    bad("conv_stride_pair_with_0", ValueError, r"stride", lambda: conv_fwd(stride=(1, 0))),
    bad("conv_stride_triple", ValueError, r"stride", lambda: conv_fwd(stride=(1, 1, 1))),
    bad("conv_stride_float", TypeError, r"stride", lambda: conv_fwd(stride=1.5)),
    bad("conv_padding_negative", ValueError, r"padding", lambda: conv_fwd(padding=-1)),
    bad("conv_padding_pair_negative", ValueError, r"padding", lambda: conv_fwd(padding=(0, -2))),
    bad("conv_padding_overflows_int64", ValueError, r"padding", lambda: conv_fwd(padding=2**62)),
    bad("conv_result_size_overflows", ValueError, r"addressed|too large",
        lambda: conv_fwd(padding=2**40)),
    bad("conv_out_read_only", ValueError, r"out.*(read-only|writeable)",
        lambda: conv_fwd(out=read_only(f32(2, 4, 4, 4)))),
    bad("conv_out_wrong_shape", ValueError, r"out.*shape",
        lambda: conv_fwd(out=f32(2, 4, 6, 6))),
    bad("conv_out_is_x", ValueError, r"out.*overlap",
        lambda: conv_fwd(IMAGE_4X4, f32(1, 1, 1, 1), None, out=IMAGE_4X4)),
    # conv2d_backward
    bad("conv_backward_dy_float64", TypeError, r"dy.*dtype",
        lambda: conv_bwd(dy=DY.astype(np.float64))),
    bad("conv_backward_dy_wrong_shape", ValueError, r"dy.*shape",
        lambda: conv_bwd(dy=f32(2, 4, 6, 6))),
    bad("conv_backward_dy_every_other_column", ValueError, r"dy.*contiguous",
        lambda: conv_bwd(dy=strided(DY))),
    bad("conv_backward_weight_channels_differ_from_x", ValueError, r"weight.*channels",
        lambda: conv_bwd(weight=f32(4, 5, 3, 3))),
    bad("conv_backward_stride_0", ValueError, r"stride", lambda: conv_bwd(stride=0)),
    bad("conv_backward_padding_negative", ValueError, r"padding",
        lambda: conv_bwd(padding=-1)),
    bad("conv_backward_x_float64", TypeError, r"\bx\b.*dtype",
        lambda: conv_bwd(x=X.astype(np.float64))),
    # maxpool2d_forward
    bad("pool_x_float64", TypeError, r"\bx\b.*dtype",
        lambda: ops.maxpool2d_forward(X.astype(np.float64))),
    bad("pool_x_3d", ValueError, r"\bx\b.*4-D", lambda: ops.maxpool2d_forward(X[0])),
    bad("pool_x_every_other_column", ValueError, r"\bx\b.*contiguous",
        lambda: ops.maxpool2d_forward(strided(X))),
    bad("pool_kernel_0", ValueError, r"kernel_size",
        lambda: ops.maxpool2d_forward(X, kernel_size=0)),
    bad("pool_kernel_larger_than_input", ValueError, r"kernel_size",
        lambda: ops.maxpool2d_forward(X, kernel_size=7)),
    bad("pool_kernel_wider_than_input", ValueError, r"kernel_size",
        lambda: ops.maxpool2d_forward(X, kernel_size=(1, 7))),
    bad("pool_stride_0", ValueError, r"stride", lambda: ops.maxpool2d_forward(X, stride=0)),
    bad("pool_stride_negative", ValueError, r"stride",
        lambda: ops.maxpool2d_forward(X, stride=-2)),
    # maxpool2d_backward
    bad("pool_backward_indices_int32", TypeError, r"indices.*dtype",
        lambda: pool_bwd(indices=POOL_INDICES.astype(np.int32))),
    bad("pool_backward_indices_float32", TypeError, r"indices.*dtype",
        lambda: pool_bwd(indices=POOL_INDICES.astype(np.float32))),
    bad("pool_backward_indices_wrong_shape", ValueError, r"indices.*shape",
        lambda: pool_bwd(indices=np.zeros((2, 3, 3, 2), np.int64))),
    bad("pool_backward_index_past_plane", ValueError, r"indices",
        lambda: pool_bwd(indices=np.full((2, 3, 3, 3), 36, np.int64))),
    bad("pool_backward_index_negative", ValueError, r"indices",
        lambda: pool_bwd(indices=np.full((2, 3, 3, 3), -1, np.int64))),
    bad("pool_backward_dy_wrong_shape", ValueError, r"dy.*shape",
        lambda: pool_bwd(dy=f32(2, 3, 3, 2))),
    bad("pool_backward_dy_float64", TypeError, r"dy.*dtype",
        lambda: pool_bwd(dy=POOL_DY.astype(np.float64))),
    bad("pool_backward_input_shape_3d", ValueError, r"input_shape",
        lambda: pool_bwd(input_shape=(3, 6, 6))),
    bad("pool_backward_input_shape_not_ints", TypeError, r"input_shape",
        lambda: pool_bwd(input_shape=(2, 3, 6.0, 6))),
    bad("pool_backward_input_shape_negative", ValueError, r"input_shape",
        lambda: pool_bwd(input_shape=(2, 3, -6, 6))),
    bad("pool_backward_stride_0", ValueError, r"stride", lambda: pool_bwd(stride=0)),
    # relu
    bad("relu_x_list", TypeError, r"\bx\b.*ndarray", lambda: ops.relu_forward([1.0, -1.0])),
    bad("relu_x_float64", TypeError, r"\bx\b.*dtype", lambda: ops.relu_forward(np.ones(3))),
    bad("relu_x_int32", TypeError, r"\bx\b.*dtype",
        lambda: ops.relu_forward(np.ones(3, np.int32))),
    bad("relu_x_transposed_view", ValueError, r"\bx\b.*contiguous",
        lambda: ops.relu_forward(f32(3, 2).T)),
    bad("relu_out_read_only", ValueError, r"out.*(read-only|writeable)",
        lambda: ops.relu_forward(f32(8), out=read_only(f32(8)))),
    bad("relu_out_wrong_shape", ValueError, r"out.*shape",
        lambda: ops.relu_forward(f32(8), out=f32(2, 4))),
    bad("relu_out_overlaps_x_shifted", ValueError, r"out.*overlap",
        lambda: ops.relu_forward(PAIR_8[0], out=PAIR_8[1])),
    bad("relu_backward_y_float64", TypeError, r"\by\b.*dtype",
        lambda: ops.relu_backward(np.ones(8), f32(8))),
    bad("relu_backward_dy_wrong_shape", ValueError, r"dy.*shape",
        lambda: ops.relu_backward(f32(8), f32(9))),
    bad("relu_backward_out_is_y", ValueError, r"out.*overlap",
        lambda: ops.relu_backward(PAIR_8[0], f32(8), out=PAIR_8[0])),
    bad("relu_backward_out_overlaps_dy_shifted", ValueError, r"out.*overlap",
        lambda: ops.relu_backward(f32(8), PAIR_8[0], out=PAIR_8[1])),
    # linear
    bad("linear_x_float64", TypeError, r"\bx\b.*dtype",
        lambda: ops.linear_forward(LX.astype(np.float64), LW)),
    bad("linear_weight_int64", TypeError, r"weight.*dtype",
        lambda: ops.linear_forward(LX, LW.astype(np.int64))),
    bad("linear_bias_float64", TypeError, r"bias.*dtype",
        lambda: ops.linear_forward(LX, LW, LB.astype(np.float64))),
    bad("linear_x_1d", ValueError, r"\bx\b.*2-D", lambda: ops.linear_forward(f32(7), LW)),
    bad("linear_x_transposed_view", ValueError, r"\bx\b.*contiguous",
        lambda: ops.linear_forward(f32(7, 5).T, LW)),
    bad("linear_weight_in_features_differ", ValueError, r"weight.*in_features",
        lambda: ops.linear_forward(LX, f32(6, 3))),
    bad("linear_weight_torch_layout", ValueError, r"weight",
        lambda: ops.linear_forward(LX, f32(3, 7))),
    bad("linear_bias_length_differs", ValueError, r"bias.*shape",
        lambda: ops.linear_forward(LX, LW, f32(4))),
    bad("linear_out_wrong_shape", ValueError, r"out.*shape",
        lambda: ops.linear_forward(LX, LW, out=f32(3, 5))),
    bad("linear_out_is_x", ValueError, r"out.*overlap",
        lambda: ops.linear_forward(SQUARE, f32(2, 2), out=SQUARE)),
    bad("linear_backward_dy_wrong_shape", ValueError, r"dy.*shape",
        lambda: ops.linear_backward(LX, LW, f32(5, 4))),
    bad("linear_backward_dy_float64", TypeError, r"dy.*dtype",
        lambda: ops.linear_backward(LX, LW, LDY.astype(np.float64))),
    # softmax
    bad("softmax_logits_float64", TypeError, r"logits.*dtype",
        lambda: ops.softmax(LOGITS.astype(np.float64))),
    bad("softmax_logits_1d", ValueError, r"logits.*2-D", lambda: ops.softmax(f32(10))),
    bad("softmax_logits_every_other_column", ValueError, r"logits.*contiguous",
        lambda: ops.softmax(strided(LOGITS))),
    bad("softmax_out_wrong_shape", ValueError, r"out.*shape",
        lambda: ops.softmax(LOGITS, out=f32(10, 4))),
    bad("softmax_out_overlaps_logits_shifted", ValueError, r"out.*overlap",
        lambda: ops.softmax(PAIR_LOGITS[0], out=PAIR_LOGITS[1])),
    # softmax_cross_entropy
    bad("loss_logits_float64", TypeError, r"logits.*dtype",
        lambda: loss(logits=LOGITS.astype(np.float64))),
    bad("loss_logits_1d", ValueError, r"logits.*2-D", lambda: loss(logits=f32(4))),
    bad("loss_labels_list", TypeError, r"labels.*ndarray", lambda: loss(labels=[0, 1, 2, 3])),
    bad("loss_labels_float64", TypeError, r"labels.*dtype",
        lambda: loss(labels=LABELS.astype(np.float64))),
    bad("loss_labels_int32", TypeError, r"labels.*dtype",
        lambda: loss(labels=LABELS.astype(np.int32))),
    bad("loss_labels_too_few", ValueError, r"labels.*shape", lambda: loss(labels=LABELS[:3])),
    bad("loss_labels_2d", ValueError, r"labels.*shape", lambda: loss(labels=LABELS[:, None])),
    bad("loss_label_equals_classes", ValueError, r"labels.*\[0, 10\)",
        lambda: loss(labels=np.array([0, 1, 10, 3]))),
    bad("loss_label_negative", ValueError, r"labels.*\[0, 10\)",
        lambda: loss(labels=np.array([0, -1, 2, 3]))),
    bad("loss_zero_classes", ValueError, r"logits|labels",
        lambda: loss(logits=f32(4, 0))),
]


@pytest.mark.parametrize("call, error, pattern", BAD_CALLS)
def test_bad_argument_is_refused_naming_it(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_the_arguments_bad_calls_start_from_are_good():
    # Otherwise a case above could pass on an error other than the one it names.
    conv_fwd()
    conv_bwd()
    ops.maxpool2d_forward(X)
    pool_bwd()
    ops.linear_forward(LX, LW, LB)
    ops.linear_backward(LX, LW, LDY)
    ops.softmax(LOGITS)
    loss()


def test_refused_call_leaves_out_untouched():
    out = np.full((2, 2), 7.0, dtype=np.float32)

    with pytest.raises(ValueError, match="inner"):
        ops.matmul(f32(2, 3), f32(2, 2), out=out)

    np.testing.assert_array_equal(out, 7.0)


# ---------------------------------------------------------------------------------------------
# An empty batch gives empty results of the right shape, and zero parameter gradients.


@pytest.mark.usefixtures("isa")
def test_conv2d_empty_batch():
    x, weight, dy = f32(0, 3, 8, 8), f32(4, 3, 3, 3), f32(0, 4, 4, 4)

    y = ops.conv2d_forward(x, weight, f32(4), stride=2, padding=1)
    dx, dw, db = ops.conv2d_backward(x, weight, dy, stride=2, padding=1)

    assert y.shape == (0, 4, 4, 4)
    assert dx.shape == (0, 3, 8, 8)
    np.testing.assert_array_equal(dw, np.zeros((4, 3, 3, 3)))
    np.testing.assert_array_equal(db, np.zeros(4))


@pytest.mark.usefixtures("isa")
def test_maxpool2d_empty_batch():
    y, indices = ops.maxpool2d_forward(f32(0, 3, 8, 8), kernel_size=3, stride=2)
    dx = ops.maxpool2d_backward(y, indices, (0, 3, 8, 8), kernel_size=3, stride=2)

    assert y.shape == indices.shape == (0, 3, 3, 3)
    assert dx.shape == (0, 3, 8, 8)


@pytest.mark.usefixtures("isa")
def test_relu_empty():
    assert ops.relu_forward(f32(0, 5)).shape == (0, 5)
    assert ops.relu_backward(f32(0, 5), f32(0, 5)).shape == (0, 5)


@pytest.mark.usefixtures("isa")
def test_linear_empty_batch():
    x, weight = f32(0, 7), f32(7, 3)

    y = ops.linear_forward(x, weight, f32(3))
    dx, dw, db = ops.linear_backward(x, weight, f32(0, 3))

    assert y.shape == (0, 3)
    assert dx.shape == (0, 7)
    np.testing.assert_array_equal(dw, np.zeros((7, 3)))
    np.testing.assert_array_equal(db, np.zeros(3))


@pytest.mark.usefixtures("isa")
def test_softmax_and_loss_empty_batch():
    logits, labels = f32(0, 10), np.zeros(0, dtype=np.int64)

    probs = ops.softmax(logits)
    loss_value, grad = ops.softmax_cross_entropy(logits, labels)

    assert probs.shape == grad.shape == (0, 10)
    assert math.isnan(loss_value)  # the mean of nothing, as torch's cross_entropy gives


# ---------------------------------------------------------------------------------------------
# NaN and infinities flow through like in torch (the reference computes in float64; assert_close
# checks that NaN and each signed infinity land in the same places).


def with_nan_and_inf(rng, shape, nan_at, inf_at):
    x = rng.standard_normal(shape, dtype=np.float32)
    x[nan_at] = np.nan
    x[inf_at] = np.inf
    return x


@pytest.mark.usefixtures("isa")
def test_conv2d_propagates_nan_and_inf(rng):
    # The NaN and the infinity are further apart than the kernel, so no output sees both.
    x = with_nan_and_inf(rng, (2, 2, 9, 9), (0, 0, 2, 2), (1, 1, 6, 6))
    weight = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((2, 3, 9, 9), dtype=np.float32)
    tx, tw = torch64(x, requires_grad=True), torch64(weight, requires_grad=True)
    y_ref = F.conv2d(tx, tw, padding=1)
    y_ref.backward(torch64(dy))

    y = ops.conv2d_forward(x, weight, padding=1)
    dx, dw, _ = ops.conv2d_backward(x, weight, dy, padding=1)

    assert_close(y, y_ref.detach().numpy(), reduction=18)
    assert_close(dx, tx.grad.numpy(), reduction=27)
    assert_close(dw, tw.grad.numpy(), reduction=162)


@pytest.mark.usefixtures("isa")
def test_maxpool2d_propagates_nan_and_inf(rng):
    x = with_nan_and_inf(rng, (1, 2, 6, 6), (0, 0, 1, 4), (0, 1, 5, 0))
    y_ref, indices_ref = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)

    y, indices = ops.maxpool2d_forward(x)

    np.testing.assert_array_equal(y, y_ref.numpy())
    np.testing.assert_array_equal(indices, indices_ref.numpy())


@pytest.mark.usefixtures("isa")
def test_linear_propagates_nan_and_inf(rng):
    x = with_nan_and_inf(rng, (4, 6), (0, 2), (2, 5))
    weight = rng.standard_normal((6, 3), dtype=np.float32)
    bias = rng.standard_normal(3, dtype=np.float32)
    expected = F.linear(torch64(x), torch64(weight).T, torch64(bias)).numpy()

    y = ops.linear_forward(x, weight, bias)

    assert_close(y, expected, reduction=7)


@pytest.mark.usefixtures("isa")
def test_relu_propagates_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 2.0], dtype=np.float32)

    np.testing.assert_array_equal(ops.relu_forward(x), [np.nan, np.inf, 0.0, 0.0, 2.0])


@pytest.mark.usefixtures("isa")
def test_loss_propagates_nan_and_takes_minus_inf_as_zero_probability(rng):
    logits = rng.standard_normal((3, 5), dtype=np.float32)
    logits[0, 2] = np.nan
    logits[1, 4] = -np.inf
    labels = np.array([1, 0, 3])
    z = torch64(logits, requires_grad=True)
    F.cross_entropy(z, torch.from_numpy(labels), reduction="sum").backward()

    loss_value, grad = ops.softmax_cross_entropy(logits, labels)

    assert np.isnan(loss_value)
    # The row with the NaN is NaN throughout; the other rows keep their mean gradient.
    assert_close(grad, z.grad.numpy() / 3, reduction=5)
    assert_close(ops.softmax(logits[1:]), F.softmax(torch64(logits[1:]), dim=1).numpy(),
                 reduction=5)


# ---------------------------------------------------------------------------------------------
# The GIL


def test_kernel_releases_the_gil(num_threads):
    """While matmul runs in this thread, a Python thread beside it keeps ticking.

    Were the GIL held, the ticker could run only between calls, a tick or two at each edge;
    released, it ticks about once a millisecond throughout. The calls are repeated until they
    have run for half a second in all, so that the count does not depend on the kernel's speed.
    """
    num_threads(1)  # leaves the second core to the ticker
    a = np.ones((1024, 1024), dtype=np.float32)
    ticks, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    calls = []
    try:
        while sum(end - start for start, end in calls) < 0.5:
            start = time.perf_counter()
            ops.matmul(a, a)
            calls.append((start, time.perf_counter()))
    finally:
        stop.set()
        ticker.join()

    inside = sum(start < t < end for t in ticks for start, end in calls)
    assert inside >= 2 * len(calls) + 50, (
        f"{inside} ticks during {len(calls)} calls lasting "
        f"{sum(end - start for start, end in calls):.2f} s"
    )
