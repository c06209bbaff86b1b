// linear_forward and linear_backward against the direct sums, on every instruction-set path,
// with batch and feature counts below, at and above the vector widths and GEMM tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "linear.h"
#include "reference.h"

namespace tinyconv::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct LinearShape {
  int64_t batch, in, out;
};

std::string describe(const LinearShape& s) {
  std::ostringstream text;
  text << "batch " << s.batch << ", features " << s.in << " -> " << s.out;
  return text.str();
}

// Feature counts 1, 3, 5, 16, 17, 33 in both roles, batch cycling through 1, 3, 6, 17.
std::vector<LinearShape> shapes_around_vector_widths() {
  const int64_t features[] = {1, 3, 5, 16, 17, 33};
  const int64_t batches[] = {1, 3, 6, 17};
  std::vector<LinearShape> shapes;
  int64_t i = 0;
  for (int64_t in : features)
    for (int64_t out : features) shapes.push_back({batches[i++ % 4], in, out});
  return shapes;
}

void expect_forward_matches_reference(const LinearShape& s, bool with_bias = true) {
  SCOPED_TRACE(describe(s));
  const auto x = random_floats(s.batch * s.in, 1);
  const auto weight = random_floats(s.in * s.out, 2);
  const auto bias = random_floats(s.out, 3);
  const float* bias_or_null = with_bias ? bias.data() : nullptr;
  const auto expected = linear_forward_reference(s.batch, s.in, s.out, x, weight, bias_or_null);

  for_each_isa([&] {
    std::vector<float> y(expected.size(), kNaN);
    linear_forward(s.batch, s.in, s.out, x.data(), weight.data(), bias_or_null, y.data());
    EXPECT_TRUE(all_close(y, expected, {s.batch, s.out}, sum_tolerance(s.in + 1)));
  });
}

void expect_backward_matches_reference(const LinearShape& s, bool input_grad = true,
                                       bool bias_grad = true) {
  SCOPED_TRACE(describe(s));
  const auto x = random_floats(s.batch * s.in, 4);
  const auto weight = random_floats(s.in * s.out, 5);
  const auto dy = random_floats(s.batch * s.out, 6);
  const LinearGradients expected =
      linear_backward_reference(s.batch, s.in, s.out, x, weight, dy);

  for_each_isa([&] {
    std::vector<float> dx(x.size(), kNaN), dweight(weight.size(), kNaN), dbias(s.out, kNaN);
    linear_backward(s.batch, s.in, s.out, x.data(), weight.data(), dy.data(),
                    input_grad ? dx.data() : nullptr, dweight.data(),
                    bias_grad ? dbias.data() : nullptr);

    EXPECT_TRUE(all_close(dweight, expected.dweight, {s.in, s.out}, sum_tolerance(s.batch)));
    if (bias_grad) {
      EXPECT_TRUE(all_close(dbias, expected.dbias, {s.out}, sum_tolerance(s.batch)));
    } else {
      EXPECT_TRUE(std::isnan(dbias[0])) << "dbias written although it was not asked for";
    }
    if (input_grad) {
      EXPECT_TRUE(all_close(dx, expected.dx, {s.batch, s.in}, sum_tolerance(s.out)));
    } else if (!dx.empty()) {
      EXPECT_TRUE(std::isnan(dx[0])) << "dx written although it was not asked for";
    }
  });
}

TEST(LinearForward, ShapesAroundVectorWidths) {
  for (const LinearShape& s : shapes_around_vector_widths()) expect_forward_matches_reference(s);
}

TEST(LinearForward, WithoutBias) {
  expect_forward_matches_reference({5, 17, 10}, false);
}

TEST(LinearForward, BatchZeroTouchesNothing) {
  const auto weight = random_floats(4 * 3, 7);
  const auto bias = random_floats(3, 8);
  linear_forward(0, 4, 3, nullptr, weight.data(), bias.data(), nullptr);
}

TEST(LinearBackward, ShapesAroundVectorWidths) {
  for (const LinearShape& s : shapes_around_vector_widths()) {
    expect_backward_matches_reference(s);
  }
}

TEST(LinearBackward, SkipsInputAndBiasGradientsWhenNull) {
  expect_backward_matches_reference({6, 17, 10}, false, true);
  expect_backward_matches_reference({6, 17, 10}, true, false);
  expect_backward_matches_reference({6, 17, 10}, false, false);
}

// The gradient of an empty batch is zero; x, dy and dx are empty and must stay untouched.
TEST(LinearBackward, BatchZeroZeroesWeightAndBiasGradients) {
  const auto weight = random_floats(4 * 3, 9);
  for_each_isa([&] {
    std::vector<float> dweight(weight.size(), kNaN), dbias(3, kNaN);
    linear_backward(0, 4, 3, nullptr, weight.data(), nullptr, nullptr, dweight.data(),
                    dbias.data());
    EXPECT_TRUE(all_close(dweight, std::vector<double>(weight.size(), 0.0), {4, 3}, 0.0));
    EXPECT_TRUE(all_close(dbias, std::vector<double>(3, 0.0), {3}, 0.0));
  });
}

}  // namespace
}  // namespace tinyconv::test
