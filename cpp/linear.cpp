// Fully connected layer, float32, row-major: x (batch, in), weight (in, out), y (batch, out).
//   forward  y  = x · W + b
//   backward dW = x^T · dy,  db = the column sums of dy,  dx = dy · W^T
// The transposes are GEMM operand flags; nothing is transposed in memory.
#include "linear.h"

#include <algorithm>

#include "gemm.h"

namespace tinyconv {

void linear_forward(int64_t batch, int64_t in, int64_t out, const float* x,
                    const float* weight, const float* bias, float* y) {
  if (batch == 0) return;

  // Starting from the bias and accumulating adds it without a second pass over y.
  if (bias != nullptr) {
    for (int64_t i = 0; i < batch; ++i) std::copy_n(bias, out, y + i * out);
  }
  gemm_f32(false, false, batch, out, in, x, in, weight, out, y, out, bias != nullptr);
}

void linear_backward(int64_t batch, int64_t in, int64_t out, const float* x,
                     const float* weight, const float* dy, float* dx, float* dweight,
                     float* dbias) {
  gemm_f32(true, false, in, out, batch, x, in, dy, out, dweight, out, false);

  if (dbias != nullptr) {
    std::fill_n(dbias, out, 0.0f);
    for (int64_t i = 0; i < batch; ++i) {
      const float* row = dy + i * out;
      for (int64_t j = 0; j < out; ++j) dbias[j] += row[j];
    }
  }

  if (dx != nullptr) gemm_f32(false, true, batch, in, out, dy, out, weight, out, dx, in, false);
}

}  // namespace tinyconv
