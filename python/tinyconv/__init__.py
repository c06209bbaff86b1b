"""tinyconv: trains small convolutional networks on the CPU, fast.

The kernels (convolution, pooling, GEMM and their gradients) are C++ with AVX2/FMA and OpenMP;
`tinyconv.ops` exposes them on NumPy arrays without copies, and `tinyconv.model` composes them
into a network.
"""

from importlib.metadata import PackageNotFoundError, version

from ._kernels import get_num_threads, isa, set_num_threads

try:
    __version__ = version("tinyconv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "get_num_threads", "isa", "set_num_threads"]
