// 2-D max pooling, NCHW, float32, no padding.
// x is read as batch*channels independent planes (in_h x in_w), y and argmax as planes
// (out_h x out_w); argmax holds offsets within the input plane, as PyTorch's indices do.
#include "maxpool2d.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tinyconv {

namespace {

// Pools one plane, one output row at a time: the row starts as its windows' top-left
// inputs, then folds in the other kernel positions one by one. A kernel position lies at
// the same offset from every window's corner, so each fold is a select over the row that
// the compiler vectorises; branching instead would mispredict about every other input.
// `winner` (room for one output row) holds the kernel position each maximum came from, as
// int32 to vectorise alongside the floats: the caller has checked that kernels have fewer
// than 2^31 positions.
void maxpool2d_plane(const Pool2dShape& s, const float* in, float* y, int64_t* argmax,
                     int32_t* winner) {
  const int64_t out_h = s.out_h(), out_w = s.out_w(), stride = s.stride_w;

  for (int64_t oh = 0; oh < out_h; ++oh) {
    const int64_t top = oh * s.stride_h * s.in_w;
    float* best = y + oh * out_w;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      best[ow] = in[top + ow * stride];
      winner[ow] = 0;
    }

    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = kh == 0 ? 1 : 0; kw < s.kernel_w; ++kw) {
        const auto position = static_cast<int32_t>(kh * s.kernel_w + kw);
        const float* candidates = in + top + kh * s.in_w + kw;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          // Strict > keeps the first of equal maxima; a NaN always takes over, as in
          // PyTorch, so that it propagates.
          const float value = candidates[ow * stride], held = best[ow];
          const int32_t held_position = winner[ow];
          const bool take = (value > held) | (value != value);
          best[ow] = take ? value : held;
          winner[ow] = take ? position : held_position;
        }
      }
    }

    for (int64_t ow = 0; ow < out_w; ++ow) {
      const int64_t kh = winner[ow] / s.kernel_w, kw = winner[ow] % s.kernel_w;
      argmax[oh * out_w + ow] = top + ow * stride + kh * s.in_w + kw;
    }
  }
}

}  // namespace

void maxpool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* argmax) {
  const int64_t planes = s.batch * s.channels, out_w = s.out_w();
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h() * out_w;

#pragma omp parallel if (planes > 1)
  {
    std::vector<int32_t> winner(out_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      maxpool2d_plane(s, x + plane * in_plane, y + plane * out_plane,
                      argmax + plane * out_plane, winner.data());
    }
  }
}

void maxpool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* argmax,
                        float* dx) {
  const int64_t planes = s.batch * s.channels;
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h() * s.out_w();

#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    float* grad = dx + plane * in_plane;
    std::fill_n(grad, in_plane, 0.0f);
    for (int64_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o) {
      grad[argmax[o]] += dy[o];
    }
  }
}

}  // namespace tinyconv
