"""The kernels on NumPy arrays.

Every function takes float32, C-contiguous arrays (NCHW for images) and never copies or
converts them: anything else raises TypeError (wrong type or dtype) or ValueError (wrong
shape, layout, or a read-only or overlapping `out`). The GIL is released while a kernel runs.
"""

from ._kernels import (
    conv2d_backward,
    conv2d_forward,
    get_num_threads,
    isa,
    linear_backward,
    linear_forward,
    matmul,
    maxpool2d_backward,
    maxpool2d_forward,
    relu_backward,
    relu_forward,
    set_num_threads,
    softmax,
    softmax_cross_entropy,
)

__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "get_num_threads",
    "isa",
    "linear_backward",
    "linear_forward",
    "matmul",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "relu_backward",
    "relu_forward",
    "set_num_threads",
    "softmax",
    "softmax_cross_entropy",
]
