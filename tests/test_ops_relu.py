"""Parity of tinyconv.ops.relu_forward/backward with torch.relu and its autograd."""

import numpy as np
import pytest
import torch

from tinyconv import ops

pytestmark = pytest.mark.usefixtures("isa")

# Lengths below, at and above 8- and 32-float vector steps, and two image-shaped batches.
SHAPES = {
    "one": (1,),
    "below_vector": (7,),
    "one_vector": (8,),
    "vector_and_one": (9,),
    "four_vectors_and_one": (33,),
    "image_batch_odd": (3, 17, 5, 5),
    "network_activation": (64, 16, 32, 32),
}
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float32).tiny, -1e-45], dtype=np.float32
)


def activations(rng, shape):
    """Random values with zeros, signed zeros, infinities, NaN and denormals sprinkled in."""
    x = rng.standard_normal(shape, dtype=np.float32)
    flat = x.reshape(-1)
    where = rng.choice(flat.size, size=min(flat.size, 2 * SPECIALS.size), replace=False)
    flat[where] = np.resize(SPECIALS, where.size)
    return x


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_relu_forward_matches_torch(rng, shape):
    x = activations(rng, shape)
    expected = torch.relu(torch.from_numpy(x)).numpy()

    y = ops.relu_forward(x)

    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)


def test_relu_forward_in_place(rng):
    x = activations(rng, SHAPES["image_batch_odd"])
    expected = torch.relu(torch.from_numpy(x)).numpy()

    got = ops.relu_forward(x, out=x)

    assert got is x
    np.testing.assert_array_equal(x, expected)


def torch_relu_grad(x, dy):
    tx = torch.from_numpy(x.copy()).requires_grad_()
    torch.relu(tx).backward(torch.from_numpy(dy))
    return tx.grad.numpy()


# NaN included: like torch, relu_backward passes the gradient through a NaN output.
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_relu_backward_matches_torch(rng, shape):
    x = activations(rng, shape)
    dy = rng.standard_normal(shape, dtype=np.float32)
    expected = torch_relu_grad(x, dy)

    dx = ops.relu_backward(ops.relu_forward(x), dy)

    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, expected)


def test_relu_backward_in_place(rng):
    x = activations(rng, SHAPES["image_batch_odd"])
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    expected = torch_relu_grad(x, dy)

    got = ops.relu_backward(ops.relu_forward(x), dy, out=dy)

    assert got is dy
    np.testing.assert_array_equal(dy, expected)
