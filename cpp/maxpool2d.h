// 2-D max pooling, NCHW, float32, no padding.
#pragma once

#include <cstdint>

namespace tinyconv {

struct Pool2dShape {
  int64_t batch, channels, in_h, in_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w;

  int64_t out_h() const { return (in_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w - kernel_w) / stride_w + 1; }
};

// x: (batch, channels, in_h, in_w); y and argmax: (batch, channels, out_h, out_w).
// argmax holds, for each output, the index of its maximum within its own in_h×in_w plane
// (as PyTorch's indices do). Ties go to the first in row-major order; a NaN wins.
// The kernel must have fewer than 2^31 positions (kernel_h * kernel_w).
void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* argmax);

// dy and argmax: (batch, channels, out_h, out_w); dx: (batch, channels, in_h, in_w),
// overwritten. Each gradient goes to the position its output was taken from; overlapping
// windows add up.
void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* argmax,
                        float* dx);

}  // namespace tinyconv
