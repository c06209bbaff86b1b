"""The SIMD path and the thread count: defaults, environment variables and setters."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close

import tinyconv
from tinyconv import _kernels, ops


def run_python(code, **env):
    """Runs code in a fresh interpreter with env added to (or, for None, removed from) ours."""
    environment = {k: v for k, v in os.environ.items() if k not in env}
    environment.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=120)


def printed(code, **env):
    result = run_python(code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not _kernels.cpu_has_avx2_fma(), reason="this CPU has no AVX2+FMA")
def test_avx2_is_the_default_on_this_cpu():
    assert printed("import tinyconv; print(tinyconv.isa())", TINYCONV_ISA=None) == "avx2"


def test_environment_selects_the_portable_path():
    assert printed("import tinyconv; print(tinyconv.isa())", TINYCONV_ISA="portable") == "portable"


def test_invalid_isa_in_environment_fails_at_first_use_naming_it():
    result = run_python("import tinyconv; tinyconv.isa()", TINYCONV_ISA="sse9")

    assert result.returncode != 0
    assert "ValueError: TINYCONV_ISA must be 'portable' or 'avx2', got 'sse9'" in result.stderr


def test_set_isa_switches_and_refuses_unknown_names():
    previous = _kernels.isa()
    try:
        _kernels.set_isa("portable")
        assert tinyconv.isa() == "portable"
        with pytest.raises(ValueError, match="sse9"):
            _kernels.set_isa("sse9")
        assert tinyconv.isa() == "portable"
    finally:
        _kernels.set_isa(previous)


def test_omp_num_threads_is_honoured():
    assert printed("import tinyconv; print(tinyconv.get_num_threads())", OMP_NUM_THREADS="1") == "1"


@pytest.mark.skipif(not _kernels.openmp, reason="built without OpenMP")
def test_set_num_threads_is_reported_back(num_threads):
    num_threads(1)
    assert tinyconv.get_num_threads() == 1
    num_threads(2)
    assert tinyconv.get_num_threads() == 2


@pytest.mark.parametrize("count", [0, -1])
def test_set_num_threads_below_one_is_refused(count):
    with pytest.raises(ValueError, match=r"\bn\b.*thread"):
        tinyconv.set_num_threads(count)


def test_set_num_threads_refuses_a_float():
    with pytest.raises(TypeError, match=r"\bn\b"):
        tinyconv.set_num_threads(2.0)


def test_one_and_two_threads_agree_across_ops(rng, num_threads):
    x = rng.standard_normal((16, 8, 12, 12), dtype=np.float32)
    weight = rng.standard_normal((16, 8, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((16, 16, 6, 6), dtype=np.float32)
    features = rng.standard_normal((16, 300), dtype=np.float32)
    fc = rng.standard_normal((300, 10), dtype=np.float32)

    def run():
        y = ops.conv2d_forward(x, weight, stride=2, padding=1)
        dx, dw, _ = ops.conv2d_backward(x, weight, dy, stride=2, padding=1, bias_grad=False)
        return (y, dx, dw, ops.linear_forward(features, fc)), ops.maxpool2d_forward(x)

    num_threads(1)
    sums_one, pooled_one = run()
    num_threads(2)
    sums_two, pooled_two = run()

    for a, b, reduction in zip(sums_one, sums_two, (72, 144, 576, 300)):
        assert_close(a, b, reduction=reduction)
    for a, b in zip(pooled_one, pooled_two):
        np.testing.assert_array_equal(a, b)
