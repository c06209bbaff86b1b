// maxpool2d_forward and maxpool2d_backward against a direct window scan: sizes with and
// without a leftover row or column, overlapping windows, ties, NaN and -inf.
#include <gtest/gtest.h>

#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "maxpool2d.h"
#include "reference.h"

namespace tinyconv::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string describe(const Pool2dShape& s) {
  std::ostringstream text;
  text << "batch " << s.batch << ", channels " << s.channels << ", input " << s.in_h << "x"
       << s.in_w << ", kernel " << s.kernel_h << "x" << s.kernel_w << ", stride "
       << s.stride_h << "x" << s.stride_w;
  return text.str();
}

Shape input_shape(const Pool2dShape& s) { return {s.batch, s.channels, s.in_h, s.in_w}; }
Shape output_shape(const Pool2dShape& s) { return {s.batch, s.channels, s.out_h(), s.out_w()}; }

::testing::AssertionResult same_indices(const std::vector<int64_t>& got,
                                        const std::vector<int64_t>& expected,
                                        const Shape& shape) {
  for (size_t i = 0; i < expected.size(); ++i) {
    if (got[i] == expected[i]) continue;
    return ::testing::AssertionFailure()
           << "argmax at index " << index_in(i, shape) << " of shape " << to_string(shape)
           << ": expected " << expected[i] << ", got " << got[i];
  }
  return ::testing::AssertionSuccess();
}

// Forward on x (random when empty) must give the reference's values and indices exactly;
// backward, fed those indices, must route the gradient the reference's way.
void expect_matches_reference(const Pool2dShape& s, std::vector<float> x = {}) {
  SCOPED_TRACE(describe(s));
  if (x.empty()) x = random_floats(element_count(input_shape(s)), 1);
  const MaxPool2dResult expected = maxpool2d_forward_reference(s, x);
  const auto dy = random_floats(element_count(output_shape(s)), 2);
  const auto expected_dx = maxpool2d_backward_reference(s, dy, expected.argmax);
  const int64_t window = s.kernel_h * s.kernel_w;

  for_each_isa([&] {
    std::vector<float> y(expected.y.size(), kNaN);
    std::vector<int64_t> argmax(expected.y.size(), -1);
    maxpool2d_forward(s, x.data(), y.data(), argmax.data());
    EXPECT_TRUE(all_close(y, expected.y, output_shape(s), 0.0));
    EXPECT_TRUE(same_indices(argmax, expected.argmax, output_shape(s)));

    std::vector<float> dx(x.size(), kNaN);
    maxpool2d_backward(s, dy.data(), expected.argmax.data(), dx.data());
    EXPECT_TRUE(all_close(dx, expected_dx, input_shape(s), sum_tolerance(window)));
  });
}

TEST(MaxPool2dForward, Kernel2Stride2EvenAndOddSizes) {
  const int64_t channels[] = {1, 3, 5, 16, 17};
  for (int64_t w = 2; w <= 19; ++w) {
    expect_matches_reference({w % 2 == 0 ? 1 : 3, channels[w % 5], 2 + w % 3, w, 2, 2, 2, 2});
  }
}

TEST(MaxPool2dForward, OverlappingWindows) {
  expect_matches_reference({2, 3, 7, 9, 3, 3, 1, 1});
  expect_matches_reference({1, 4, 8, 11, 3, 3, 2, 2});
}

TEST(MaxPool2dForward, NonSquareKernelAndStride) {
  expect_matches_reference({2, 3, 9, 10, 2, 3, 1, 2});
  expect_matches_reference({1, 2, 10, 7, 3, 1, 3, 1});
}

TEST(MaxPool2dForward, WindowCoveringWholePlane) {
  expect_matches_reference({3, 5, 4, 6, 4, 6, 4, 6});
}

TEST(MaxPool2dForward, TiesGoToFirstInRowMajorOrder) {
  const Pool2dShape s{1, 1, 4, 4, 2, 2, 2, 2};
  const std::vector<float> x{1, 1, 0, 2,  //
                             1, 1, 2, 2,  //
                             -kInf, -kInf, 3, -1,  //
                             -kInf, -kInf, -1, 3};
  const std::vector<int64_t> first{0, 3, 8, 10};
  EXPECT_TRUE(same_indices(maxpool2d_forward_reference(s, x).argmax, first, {1, 1, 2, 2}));
  expect_matches_reference(s, x);
}

TEST(MaxPool2dForward, NaNWinsItsWindow) {
  const Pool2dShape s{1, 2, 4, 6, 2, 2, 2, 2};
  std::vector<float> x = random_floats(element_count(input_shape(s)), 3);
  x[1] = kNaN;               // output 0: second position of its window
  x[2 * 6 + 2] = kNaN;       // output 4: first position, and
  x[3 * 6 + 3] = kNaN;       //   last position too (the later NaN is kept, as in PyTorch)
  x[24 + 3 * 6 + 5] = kNaN;  // output 11: last position, second plane
  x[24 + 0] = kInf;          // output 6: infinity is just the largest number
  expect_matches_reference(s, x);

  std::vector<float> y(element_count(output_shape(s)));
  std::vector<int64_t> argmax(y.size());
  maxpool2d_forward(s, x.data(), y.data(), argmax.data());
  for (int64_t o : {0, 4, 11}) EXPECT_TRUE(std::isnan(y[o])) << "output " << o;
  EXPECT_EQ(y[6], kInf);
}

TEST(MaxPool2dForward, BatchZeroTouchesNothing) {
  maxpool2d_forward({0, 3, 4, 4, 2, 2, 2, 2}, nullptr, nullptr, nullptr);
}

// Windows of a 3x3 kernel at stride 1 overlap, so a pixel that is the maximum of several
// windows collects all their gradients.
TEST(MaxPool2dBackward, OverlappingWindowsAddUp) {
  const Pool2dShape s{2, 2, 5, 5, 3, 3, 1, 1};
  std::vector<float> x(element_count(input_shape(s)), 0.0f);
  x[12] = 1.0f;        // the centre of plane 0 is the maximum of all nine windows
  x[25 + 6] = 1.0f;
  x[25 + 18] = 1.0f;
  expect_matches_reference(s, x);

  const std::vector<float> dy(element_count(output_shape(s)), 1.0f);
  std::vector<float> dx(x.size());
  std::vector<float> y(dy.size());
  std::vector<int64_t> argmax(dy.size());
  maxpool2d_forward(s, x.data(), y.data(), argmax.data());
  maxpool2d_backward(s, dy.data(), argmax.data(), dx.data());
  EXPECT_EQ(dx[12], 9.0f);
}

TEST(MaxPool2dBackward, BatchZeroTouchesNothing) {
  maxpool2d_backward({0, 3, 4, 4, 2, 2, 2, 2}, nullptr, nullptr, nullptr);
}

}  // namespace
}  // namespace tinyconv::test
