"""Parity of tinyconv.ops.matmul with NumPy (float64) and torch.matmul."""

import numpy as np
import pytest
import torch
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")

# The AVX2 tile is 6x16, the portable one 4x12; the reduction is cut in slices of 256, rows of
# C in blocks of 144 and columns in blocks of 960. Each shape sits below, at or above one edge.
SHAPES = {
    "one_element": (1, 1, 1),
    "rows_below_tile": (5, 16, 7),
    "rows_and_cols_at_tile": (6, 16, 8),
    "rows_and_cols_above_tile": (7, 17, 9),
    "cols_portable_tile_remainder": (12, 9, 3),
    "depth_1": (64, 64, 1),
    "depth_at_slice": (13, 33, 256),
    "depth_above_slice": (13, 31, 257),
    "depth_two_slices_and_remainder": (30, 40, 600),
    "rows_above_block": (145, 20, 30),
    "rows_two_blocks_and_remainder": (300, 47, 65),
    "cols_above_block": (3, 961, 5),
    "cols_four_blocks_and_remainder": (3, 4097, 5),
    "square_256": (256, 256, 256),
    "depth_0": (4, 5, 0),
    "rows_0": (0, 5, 3),
    "cols_0": (5, 0, 3),
}
TRANSPOSES = {"nn": (False, False), "tn": (True, False), "nt": (False, True), "tt": (True, True)}


def operands(rng, m, n, k, trans_a, trans_b):
    """Random a and b, stored transposed where asked, and the float64 product op(a) @ op(b)."""
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    return a, b, op_a.astype(np.float64) @ op_b.astype(np.float64)


@pytest.mark.parametrize("trans", TRANSPOSES.values(), ids=TRANSPOSES.keys())
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matmul_matches_numpy(rng, shape, trans):
    m, n, k = shape
    a, b, expected = operands(rng, m, n, k, *trans)

    got = ops.matmul(a, b, trans_a=trans[0], trans_b=trans[1])

    assert got.dtype == np.float32
    assert_close(got, expected, reduction=k)


@pytest.mark.parametrize("trans", TRANSPOSES.values(), ids=TRANSPOSES.keys())
def test_matmul_matches_torch(rng, trans):
    a, b, _ = operands(rng, 37, 45, 300, *trans)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    expected = torch.matmul(ta.T if trans[0] else ta, tb.T if trans[1] else tb)

    got = ops.matmul(a, b, trans_a=trans[0], trans_b=trans[1])

    assert_close(got, expected.numpy(), reduction=300)


@pytest.mark.parametrize("trans", TRANSPOSES.values(), ids=TRANSPOSES.keys())
@pytest.mark.parametrize(
    "shape",
    [SHAPES[name] for name in ("rows_and_cols_above_tile", "depth_two_slices_and_remainder",
                               "rows_two_blocks_and_remainder", "depth_0")],
    ids=["above_tile", "two_slices", "two_row_blocks", "depth_0"],
)
def test_matmul_accumulate_adds_into_out(rng, shape, trans):
    m, n, k = shape
    a, b, product = operands(rng, m, n, k, *trans)
    out = rng.standard_normal((m, n), dtype=np.float32)
    expected = out.astype(np.float64) + product

    got = ops.matmul(a, b, trans_a=trans[0], trans_b=trans[1], out=out, accumulate=True)

    assert got is out
    assert_close(out, expected, reduction=k + 1)


@pytest.mark.parametrize("shape", [(7, 17, 9), (4, 5, 0)], ids=["above_tile", "depth_0"])
def test_matmul_out_overwrites_nan_it_held(rng, shape):
    # A kernel that scales the old C by zero instead of ignoring it would keep the NaN.
    m, n, k = shape
    a, b, expected = operands(rng, m, n, k, False, False)
    out = np.full((m, n), np.nan, dtype=np.float32)

    got = ops.matmul(a, b, out=out)

    assert got is out
    assert_close(out, expected, reduction=k)


def test_matmul_same_bits_on_one_and_two_threads(rng, num_threads):
    a, b, _ = operands(rng, 300, 200, 513, False, True)

    num_threads(1)
    one = ops.matmul(a, b, trans_b=True)
    num_threads(2)
    two = ops.matmul(a, b, trans_b=True)

    np.testing.assert_array_equal(one, two)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.integers(0, 70),
    n=st.integers(0, 70),
    k=st.integers(0, 300),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    accumulate=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_random_shapes(m, n, k, trans_a, trans_b, accumulate, seed):
    rng = np.random.default_rng(seed)
    a, b, expected = operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n), dtype=np.float32)
    if accumulate:
        expected = expected + out

    ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, accumulate=accumulate)

    assert_close(out, expected, reduction=k + 1)
