// Element-wise kernels over flat float32 buffers.
#pragma once

#include <cstdint>

namespace tinyconv {

// y = max(x, 0), NaN kept. y may be x (in place).
void relu_forward(int64_t n, const float* x, float* y);

// dx = 0 where y <= 0, else dy (so a NaN output passes its gradient on, as in PyTorch).
// y is ReLU's output. dx may be dy (in place).
void relu_backward(int64_t n, const float* y, const float* dy, float* dx);

}  // namespace tinyconv
