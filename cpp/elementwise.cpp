// Element-wise kernels over flat float32 buffers of n elements; input and output may be the
// same buffer, as each element is read before it is written.
#include "elementwise.h"

namespace tinyconv {

namespace {

// Below this many elements, starting the threads costs more than the loop.
constexpr int64_t kParallelMinElements = int64_t{1} << 16;

}  // namespace

// `simd` vouches that the buffers are the same or disjoint, which the compiler cannot see,
// so the loops are vectorised even in place. Loading dy before the select, rather than only
// where y > 0, lets the select be a blend instead of a branch on random signs.

void relu_forward(int64_t n, const float* x, float* y) {
  // x < 0 is false for NaN, so NaN passes through.
#pragma omp parallel for simd if (parallel : n >= kParallelMinElements) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElements) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float grad = dy[i];
    dx[i] = y[i] <= 0.0f ? 0.0f : grad;
  }
}

}  // namespace tinyconv
