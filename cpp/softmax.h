// Softmax and the softmax cross-entropy loss over rows of logits, float32.
#pragma once

#include <cstdint>

namespace tinyconv {

// logits, probs: (batch, classes). probs may be logits (in place).
void softmax_forward(int64_t batch, int64_t classes, const float* logits, float* probs);

// The mean over the batch of -log softmax(logits)[label], computed with log-sum-exp.
// labels: (batch), each in [0, classes) (the caller has checked). When dlogits is not nullptr
// it receives the gradient of that mean, (softmax - onehot) / batch. The mean of an empty
// batch is NaN, as in PyTorch.
float softmax_cross_entropy(int64_t batch, int64_t classes, const float* logits,
                            const int64_t* labels, float* dlogits);

}  // namespace tinyconv
