// softmax_forward and softmax_cross_entropy against the definitions in double: class counts
// around the vector widths, in place, large logits, NaN and infinities.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "reference.h"
#include "softmax.h"

namespace tinyconv::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<int64_t> random_labels(int64_t batch, int64_t classes, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  std::vector<int64_t> labels(batch);
  for (int64_t& label : labels) label = pick(engine);
  return labels;
}

// d(mean loss)/dz = (softmax(z) - onehot(label)) / batch, from the reference softmax.
std::vector<double> cross_entropy_gradient_reference(int64_t batch, int64_t classes,
                                                     const std::vector<float>& logits,
                                                     const std::vector<int64_t>& labels) {
  std::vector<double> grad = softmax_reference(batch, classes, logits);
  for (int64_t i = 0; i < batch; ++i) {
    grad[i * classes + labels[i]] -= 1.0;
    for (int64_t j = 0; j < classes; ++j) grad[i * classes + j] /= batch;
  }
  return grad;
}

void expect_softmax_matches_reference(int64_t batch, int64_t classes,
                                      const std::vector<float>& logits) {
  const auto expected = softmax_reference(batch, classes, logits);
  for_each_isa([&] {
    std::vector<float> probs(logits.size(), kNaN);
    softmax_forward(batch, classes, logits.data(), probs.data());
    EXPECT_TRUE(all_close(probs, expected, {batch, classes}, sum_tolerance(classes)));

    std::vector<float> in_place = logits;
    softmax_forward(batch, classes, in_place.data(), in_place.data());
    EXPECT_TRUE(all_close(in_place, expected, {batch, classes}, sum_tolerance(classes)));
  });
}

void expect_cross_entropy_matches_reference(int64_t batch, int64_t classes,
                                            const std::vector<float>& logits,
                                            const std::vector<int64_t>& labels) {
  const double expected_loss = cross_entropy_reference(batch, classes, logits, labels);
  const auto expected_grad = cross_entropy_gradient_reference(batch, classes, logits, labels);
  for_each_isa([&] {
    std::vector<float> grad(logits.size(), kNaN);
    const float loss =
        softmax_cross_entropy(batch, classes, logits.data(), labels.data(), grad.data());
    EXPECT_NEAR(loss, expected_loss, sum_tolerance(classes) * (1.0 + std::fabs(expected_loss)));
    EXPECT_TRUE(all_close(grad, expected_grad, {batch, classes},
                          sum_tolerance(classes) / batch));

    const float loss_only =
        softmax_cross_entropy(batch, classes, logits.data(), labels.data(), nullptr);
    EXPECT_EQ(loss_only, loss);
  });
}

TEST(SoftmaxForward, ClassCounts1To17) {
  for (int64_t classes = 1; classes <= 17; ++classes) {
    SCOPED_TRACE("classes " + std::to_string(classes));
    const int64_t batch = classes % 2 == 0 ? 1 : 3;
    expect_softmax_matches_reference(batch, classes, random_floats(batch * classes, 1));
  }
}

// Enough rows to run on several threads.
TEST(SoftmaxForward, ManyRows) {
  expect_softmax_matches_reference(4001, 10, random_floats(4001 * 10, 2));
}

// exp(1000) overflows even in double; shifting by the row maximum must avoid it.
TEST(SoftmaxForward, LargeLogitsDoNotOverflow) {
  std::vector<float> logits = random_floats(3 * 10, 3);
  for (int64_t j = 0; j < 10; ++j) logits[j] = 1000.0f + 4.0f * logits[j];
  for (int64_t j = 10; j < 20; ++j) logits[j] = -1000.0f + 4.0f * logits[j];
  expect_softmax_matches_reference(3, 10, logits);
}

TEST(SoftmaxForward, NaNOrInfinityPoisonsOnlyItsRow) {
  std::vector<float> logits = random_floats(4 * 5, 4);
  logits[0 * 5 + 2] = kNaN;
  logits[1 * 5 + 0] = kNaN;
  logits[2 * 5 + 4] = kInf;
  std::vector<float> probs(logits.size());
  softmax_forward(4, 5, logits.data(), probs.data());
  for (int64_t j = 0; j < 15; ++j) EXPECT_TRUE(std::isnan(probs[j])) << "index " << j;
  for (int64_t j = 15; j < 20; ++j) EXPECT_TRUE(std::isfinite(probs[j])) << "index " << j;
}

TEST(SoftmaxCrossEntropy, ClassCounts1To17) {
  for (int64_t classes = 1; classes <= 17; ++classes) {
    SCOPED_TRACE("classes " + std::to_string(classes));
    const int64_t batch = classes % 2 == 0 ? 1 : 5;
    expect_cross_entropy_matches_reference(batch, classes, random_floats(batch * classes, 5),
                                           random_labels(batch, classes, 6));
  }
}

TEST(SoftmaxCrossEntropy, LargeLogitsStayFinite) {
  std::vector<float> logits = random_floats(4 * 10, 7);
  for (int64_t i = 0; i < 40; ++i) logits[i] = (i < 20 ? 1000.0f : -1000.0f) + 8 * logits[i];
  expect_cross_entropy_matches_reference(4, 10, logits, random_labels(4, 10, 8));
}

// -inf away from the label is a class with probability 0, a finite loss; at the label it is
// an infinite loss. NaN and +inf make their row's loss and gradient NaN.
TEST(SoftmaxCrossEntropy, NaNAndInfinitiesPropagateWithoutCrashing) {
  const std::vector<int64_t> labels{0, 1, 2, 3};
  std::vector<float> logits = random_floats(4 * 4, 9);
  logits[0 * 4 + 3] = -kInf;
  expect_cross_entropy_matches_reference(1, 4, {logits.begin(), logits.begin() + 4}, labels);

  std::vector<float> grad(logits.size());
  logits[1 * 4 + 1] = -kInf;
  EXPECT_EQ(softmax_cross_entropy(2, 4, logits.data(), labels.data(), grad.data()), kInf);

  logits[2 * 4 + 0] = kNaN;
  logits[3 * 4 + 3] = kInf;
  const float loss = softmax_cross_entropy(4, 4, logits.data(), labels.data(), grad.data());
  EXPECT_TRUE(std::isnan(loss));
  for (int64_t j = 0; j < 4; ++j) EXPECT_TRUE(std::isfinite(grad[j])) << "index " << j;
  for (int64_t j = 8; j < 16; ++j) EXPECT_TRUE(std::isnan(grad[j])) << "index " << j;
}

TEST(SoftmaxCrossEntropy, BatchZeroIsNaNLikeAnEmptyMean) {
  EXPECT_TRUE(std::isnan(softmax_cross_entropy(0, 10, nullptr, nullptr, nullptr)));
}

}  // namespace
}  // namespace tinyconv::test
