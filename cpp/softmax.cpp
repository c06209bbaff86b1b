// Softmax over the rows of logits (batch, classes), float32, row-major.
// Each row is shifted by its maximum before exponentiating, so no exp overflows; sums are
// kept in double. A NaN or infinite logit makes its row NaN, as in PyTorch, and nothing
// else: every loop stays within its row.
#include "softmax.h"

#include <cmath>
#include <limits>

namespace tinyconv {

namespace {

// Below this many logits, starting the threads costs more than the loop.
constexpr int64_t kParallelMinLogits = int64_t{1} << 15;

// The largest logit of a row (classes >= 1). NaNs are skipped unless first; either way a
// NaN reaches the sum of exponentials below and from there the whole row.
float row_max(const float* z, int64_t classes) {
  float largest = z[0];
  for (int64_t j = 1; j < classes; ++j) largest = z[j] > largest ? z[j] : largest;
  return largest;
}

// Returns the sum of exp(z[j] - shift) over a row; e, unless nullptr, receives the terms.
// e may be z.
double shifted_exp_sum(const float* z, int64_t classes, float shift, float* e) {
  double sum = 0.0;
  for (int64_t j = 0; j < classes; ++j) {
    const float term = std::exp(z[j] - shift);
    if (e != nullptr) e[j] = term;
    sum += term;
  }
  return sum;
}

}  // namespace

void softmax_forward(int64_t batch, int64_t classes, const float* logits, float* probs) {
  if (classes == 0) return;

#pragma omp parallel for if (batch * classes >= kParallelMinLogits) schedule(static)
  for (int64_t i = 0; i < batch; ++i) {
    const float* z = logits + i * classes;
    float* p = probs + i * classes;
    const double sum = shifted_exp_sum(z, classes, row_max(z, classes), p);
    for (int64_t j = 0; j < classes; ++j) p[j] = static_cast<float>(p[j] / sum);
  }
}

float softmax_cross_entropy(int64_t batch, int64_t classes, const float* logits,
                            const int64_t* labels, float* dlogits) {
  if (batch == 0) return std::numeric_limits<float>::quiet_NaN();

  // loss_i = log(sum_j exp(z_j)) - z_label = shift + log(sum_j exp(z_j - shift)) - z_label.
  // The gradient of the batch mean is (softmax(z) - onehot(label)) / batch per row.
  double total = 0.0;
  for (int64_t i = 0; i < batch; ++i) {
    const float* z = logits + i * classes;
    float* dz = dlogits != nullptr ? dlogits + i * classes : nullptr;
    const int64_t label = labels[i];
    const float target = z[label];
    const float shift = row_max(z, classes);
    const double sum = shifted_exp_sum(z, classes, shift, dz);
    total += shift + std::log(sum) - target;
    if (dz == nullptr) continue;

    for (int64_t j = 0; j < classes; ++j) {
      const double onehot = j == label ? 1.0 : 0.0;
      dz[j] = static_cast<float>((dz[j] / sum - onehot) / static_cast<double>(batch));
    }
  }
  return static_cast<float>(total / static_cast<double>(batch));
}

}  // namespace tinyconv
