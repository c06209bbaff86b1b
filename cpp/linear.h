// Fully connected layer y = x · W + b, float32, row-major.
// The weight is kept (in_features, out_features), as the notebook keeps it: the transpose of
// PyTorch's nn.Linear weight.
#pragma once

#include <cstdint>

namespace tinyconv {

// x: (batch, in), weight: (in, out), bias: (out) or nullptr, y: (batch, out).
void linear_forward(int64_t batch, int64_t in, int64_t out, const float* x,
                    const float* weight, const float* bias, float* y);

// dy: (batch, out). Overwrites dx (batch, in; skipped when nullptr), dweight (in, out) and
// dbias (out; skipped when nullptr).
void linear_backward(int64_t batch, int64_t in, int64_t out, const float* x,
                     const float* weight, const float* dy, float* dx, float* dweight,
                     float* dbias);

}  // namespace tinyconv
