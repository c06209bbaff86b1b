// relu_forward and relu_backward against their definitions: lengths around the vector
// widths and the threading threshold, in place, NaN, zeros.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "elementwise.h"
#include "reference.h"

namespace tinyconv::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Every length up to past two 16-float blocks, and lengths around the size above which the
// loop runs on several threads.
std::vector<int64_t> lengths() {
  std::vector<int64_t> result;
  for (int64_t n = 0; n <= 40; ++n) result.push_back(n);
  for (int64_t n : {(1 << 16) - 1, 1 << 16, (1 << 16) + 13}) result.push_back(n);
  return result;
}

// Random values in [-1, 1] with some exact zeros, infinities and NaNs mixed in.
std::vector<float> inputs_with_specials(int64_t n, uint32_t seed) {
  std::vector<float> x = random_floats(n, seed);
  const float specials[] = {0.0f, -0.0f, kNaN, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (int64_t i = 0; i < n; i += 7) x[i] = specials[(i / 7) % 5];
  return x;
}

std::vector<double> relu_reference(const std::vector<float>& x) {
  std::vector<double> y;
  for (float v : x) y.push_back(std::isnan(v) ? v : std::max(double{v}, 0.0));
  return y;
}

std::vector<double> relu_backward_reference(const std::vector<float>& y,
                                            const std::vector<float>& dy) {
  std::vector<double> dx;
  for (size_t i = 0; i < y.size(); ++i) dx.push_back(y[i] <= 0.0f ? 0.0 : dy[i]);
  return dx;
}

TEST(ReluForward, LengthsAroundVectorWidthsAndThreading) {
  for (int64_t n : lengths()) {
    SCOPED_TRACE("n " + std::to_string(n));
    const auto x = inputs_with_specials(n, 1);
    const auto expected = relu_reference(x);
    for_each_isa([&] {
      std::vector<float> y(n, 42.0f);
      relu_forward(n, x.data(), y.data());
      EXPECT_TRUE(all_close(y, expected, {n}, 0.0));
    });
  }
}

TEST(ReluForward, InPlace) {
  for (int64_t n : {int64_t{37}, int64_t{(1 << 16) + 5}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const auto x = inputs_with_specials(n, 2);
    const auto expected = relu_reference(x);
    for_each_isa([&] {
      std::vector<float> y = x;
      relu_forward(n, y.data(), y.data());
      EXPECT_TRUE(all_close(y, expected, {n}, 0.0));
    });
  }
}

TEST(ReluForward, KeepsNaN) {
  const std::vector<float> x{kNaN, -1.0f, kNaN};
  std::vector<float> y(3);
  relu_forward(3, x.data(), y.data());
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[2]));
  EXPECT_EQ(y[1], 0.0f);
}

// The gradient passes only where the output is positive: not at 0 (nor -0), not at NaN.
TEST(ReluBackward, LengthsAroundVectorWidthsAndThreading) {
  for (int64_t n : lengths()) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> y = inputs_with_specials(n, 3);
    relu_forward(n, y.data(), y.data());
    const auto dy = random_floats(n, 4);
    const auto expected = relu_backward_reference(y, dy);
    for_each_isa([&] {
      std::vector<float> dx(n, 42.0f);
      relu_backward(n, y.data(), dy.data(), dx.data());
      EXPECT_TRUE(all_close(dx, expected, {n}, 0.0));
    });
  }
}

TEST(ReluBackward, InPlace) {
  for (int64_t n : {int64_t{37}, int64_t{(1 << 16) + 5}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const auto y = inputs_with_specials(n, 5);
    const auto dy = random_floats(n, 6);
    const auto expected = relu_backward_reference(y, dy);
    for_each_isa([&] {
      std::vector<float> dx = dy;
      relu_backward(n, y.data(), dx.data(), dx.data());
      EXPECT_TRUE(all_close(dx, expected, {n}, 0.0));
    });
  }
}

}  // namespace
}  // namespace tinyconv::test
