// 2-D convolution (cross-correlation, as in PyTorch), NCHW, float32.
#pragma once

#include <cstdint>

namespace tinyconv {

struct Conv2dShape {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w;

  int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }
};

// x: (batch, in_channels, in_h, in_w)
// weight: (out_channels, in_channels, kernel_h, kernel_w)
// bias: (out_channels) or nullptr
// y: (batch, out_channels, out_h, out_w)
// The caller has checked the shape: strides >= 1, padding >= 0, kernel within padded input.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight,
                    const float* bias, float* y);

// dy: (batch, out_channels, out_h, out_w), the gradient of the loss with respect to y.
// Writes (overwrites) dx (shaped like x; skipped when nullptr), dweight (shaped like weight)
// and dbias (out_channels; skipped when nullptr).
void conv2d_backward(const Conv2dShape& s, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias);

}  // namespace tinyconv
