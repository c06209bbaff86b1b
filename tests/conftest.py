"""Fixtures and helpers shared by the test modules."""

import math
import os
from pathlib import Path

import numpy as np
import pytest


def _kernels():
    # Imported on demand, so that test modules which never touch the kernels still collect
    # when the extension is not built.
    from tinyconv import _kernels

    return _kernels


@pytest.fixture(scope="session")
def torch_threads_like_tinyconv():
    """Gives torch tinyconv's thread count, so that the two run under the same conditions."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(_kernels().get_num_threads())
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=["portable", "avx2"])
def isa(request, torch_threads_like_tinyconv):
    """Runs the test once on each SIMD path this CPU has, then restores the previous one.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("isa")``.
    """
    kernels = _kernels()
    if request.param == "avx2" and not kernels.cpu_has_avx2_fma():
        pytest.skip("this CPU has no AVX2+FMA")

    previous = kernels.isa()
    kernels.set_isa(request.param)
    yield request.param
    kernels.set_isa(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def num_threads():
    """A setter for tinyconv's thread count that is undone after the test."""
    kernels = _kernels()
    previous = kernels.get_num_threads()
    yield kernels.set_num_threads
    kernels.set_num_threads(previous)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def assert_close(ours, ref, *, reduction=1, rtol=1e-4):
    """Asserts ours ~= ref elementwise, with a tolerance fit for float32 sums.

    The error of each element is taken relative to the larger of its own magnitude and the
    result's root-mean-square, so that elements which cancel to near zero are judged on the
    scale of the result instead of blowing up. Rounding error in a sum of `reduction` terms
    grows like its square root, so the tolerance grows the same way past 1024 terms.
    NaN and infinities must sit in the same places (with the same sign) in both.
    """
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, f"shape {ours.shape}, expected {ref.shape}"
    if ours.size == 0:
        return

    ours64 = ours.astype(np.float64)
    ref64 = ref.astype(np.float64)
    for name, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = mask(ours64) != mask(ref64)
        if differ.any():
            where = _index(np.argmax(differ), ref.shape)
            msg = (
                f"{name} placement differs, shape {ref.shape}: at index {where} "
                f"expected {float(ref64[where])}, got {float(ours64[where])}"
            )
            raise AssertionError(msg)

    finite = np.isfinite(ref64)
    if not finite.any():
        return
    rms = math.sqrt(np.mean(np.square(ref64[finite])))
    scale = np.maximum(np.abs(ref64[finite]), rms if rms > 0 else 1.0)
    error = np.zeros(ref.shape)
    error[finite] = np.abs(ours64[finite] - ref64[finite]) / scale
    tol = rtol * max(1.0, math.sqrt(reduction / 1024))
    worst = _index(np.argmax(error), ref.shape)
    if error[worst] > tol:
        msg = (
            f"shape {ref.shape}: worst at index {worst}: expected {float(ref64[worst])}, "
            f"got {float(ours64[worst])}, relative error {error[worst]:.3g} > {tol:.3g} "
            f"(reduction {reduction}, {np.count_nonzero(error > tol)} elements off)"
        )
        raise AssertionError(msg)


def torch64(array, *, requires_grad=False):
    """A float64 torch copy of a NumPy array: the reference side of a parity test computes in
    double precision, so that the tolerance measures tinyconv's rounding alone."""
    import torch

    return torch.tensor(np.asarray(array), dtype=torch.float64, requires_grad=requires_grad)


def numerical_gradient(loss, x, *, step=1e-2):
    """The gradient of the scalar loss() with respect to the float32 array x, by central
    differences in float64. x is perturbed in place, one element at a time, and restored.
    The step actually taken is measured after x + step is rounded to float32."""
    grad = np.zeros(x.shape)
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous, to be perturbed through a view"
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + np.float32(step)
        up, loss_up = float(flat[i]), float(loss())
        flat[i] = original - np.float32(step)
        down, loss_down = float(flat[i]), float(loss())
        flat[i] = original
        grad.flat[i] = (loss_up - loss_down) / (up - down)
    return grad


@pytest.fixture(scope="session")
def cifar10_root():
    """The real CIFAR-10 images: $TINYCONV_DATA, else the shared JPEG copy beside the
    repository (../shared/data/cifar10-jpeg). Missing data skips the test on a developer's
    machine but fails it in CI (CI=true), where the data is always there and a skip would
    hide a test that never ran."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
    root = Path(os.environ.get("TINYCONV_DATA") or default)
    if not root.is_dir():
        msg = f"CIFAR-10 data not found at {root}; set TINYCONV_DATA to its directory"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root
