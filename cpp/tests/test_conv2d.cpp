// conv2d_forward and conv2d_backward against the direct 7-loop convolution, on every
// instruction-set path, across kernel sizes, strides, paddings, channel counts and output
// widths that leave every vector remainder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d.h"
#include "cpu.h"
#include "reference.h"

namespace tinyconv::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Channel counts below, at and above the 8-float AVX2 vector and the 16-wide GEMM tile.
constexpr int64_t kChannels[] = {1, 3, 5, 16, 17};

std::string describe(const Conv2dShape& s) {
  std::ostringstream text;
  text << "batch " << s.batch << ", channels " << s.in_channels << " -> " << s.out_channels
       << ", input " << s.in_h << "x" << s.in_w << ", kernel " << s.kernel_h << "x"
       << s.kernel_w << ", stride " << s.stride_h << "x" << s.stride_w << ", padding "
       << s.pad_h << "x" << s.pad_w << ", output " << s.out_h() << "x" << s.out_w();
  return text.str();
}

// A square kernel, stride and padding, with the input sized to give (about) the wanted
// output: `slack` extra input columns and rows that the stride then drops (slack < stride).
Conv2dShape shape_for_output(int64_t batch, int64_t in_channels, int64_t out_channels,
                             int64_t kernel, int64_t stride, int64_t pad, int64_t out_h,
                             int64_t out_w, int64_t slack = 0) {
  auto input_for = [&](int64_t out) {
    return std::max<int64_t>(1, (out - 1) * stride + kernel - 2 * pad) + slack;
  };
  return {batch,  in_channels, input_for(out_h), input_for(out_w), out_channels, kernel,
          kernel, stride,      stride,           pad,              pad};
}

void expect_forward_matches_reference(const Conv2dShape& s, bool with_bias = true) {
  SCOPED_TRACE(describe(s));
  const auto x = random_floats(element_count(input_shape(s)), 1);
  const auto weight = random_floats(element_count(weight_shape(s)), 2);
  const auto bias = random_floats(s.out_channels, 3);
  const float* bias_or_null = with_bias ? bias.data() : nullptr;
  const auto expected = conv2d_forward_reference(s, x, weight, bias_or_null);
  const int64_t terms = s.in_channels * s.kernel_h * s.kernel_w + 1;

  for_each_isa([&] {
    std::vector<float> y(expected.size(), kNaN);
    conv2d_forward(s, x.data(), weight.data(), bias_or_null, y.data());
    EXPECT_TRUE(all_close(y, expected, output_shape(s), sum_tolerance(terms)));
  });
}

void expect_backward_matches_reference(const Conv2dShape& s, bool input_grad = true,
                                       bool bias_grad = true) {
  SCOPED_TRACE(describe(s));
  const auto x = random_floats(element_count(input_shape(s)), 4);
  const auto weight = random_floats(element_count(weight_shape(s)), 5);
  const auto dy = random_floats(element_count(output_shape(s)), 6);
  const Conv2dGradients expected = conv2d_backward_reference(s, x, weight, dy);
  const int64_t per_weight = s.batch * s.out_h() * s.out_w();
  const int64_t per_pixel = s.out_channels * s.kernel_h * s.kernel_w;

  for_each_isa([&] {
    std::vector<float> dx(x.size(), kNaN), dweight(weight.size(), kNaN);
    std::vector<float> dbias(s.out_channels, kNaN);
    conv2d_backward(s, x.data(), weight.data(), dy.data(), input_grad ? dx.data() : nullptr,
                    dweight.data(), bias_grad ? dbias.data() : nullptr);

    EXPECT_TRUE(all_close(dweight, expected.dweight, weight_shape(s),
                          sum_tolerance(per_weight)));
    if (bias_grad) {
      EXPECT_TRUE(all_close(dbias, expected.dbias, {s.out_channels},
                            sum_tolerance(per_weight)));
    } else {
      EXPECT_TRUE(std::isnan(dbias[0])) << "dbias written although it was not asked for";
    }
    if (input_grad) {
      EXPECT_TRUE(all_close(dx, expected.dx, input_shape(s), sum_tolerance(per_pixel)));
    } else {
      EXPECT_TRUE(std::isnan(dx[0])) << "dx written although it was not asked for";
    }
  });
}

// Output widths 1..17 with a 3x3 kernel, padding 1, stride 1: every remainder of an
// 8-float vector and of a 16-wide tile, with channel counts and batch cycling alongside.
std::vector<Conv2dShape> output_width_sweep() {
  std::vector<Conv2dShape> shapes;
  for (int64_t w = 1; w <= 17; ++w) {
    shapes.push_back(shape_for_output(w % 2 == 1 ? 1 : 3, kChannels[w % 5],
                                      kChannels[(w + 2) % 5], 3, 1, 1, 1 + w % 4, w));
  }
  return shapes;
}

// Kernels 1, 3, 5 x strides 1, 2 x paddings 0, 1, 2 x batch 1, 3, each at a few output
// widths, some with input columns that the stride leaves unused.
std::vector<Conv2dShape> kernel_stride_padding_grid() {
  std::vector<Conv2dShape> shapes;
  int64_t i = 0;
  for (int64_t kernel : {1, 3, 5})
    for (int64_t stride : {1, 2})
      for (int64_t pad : {0, 1, 2})
        for (int64_t batch : {1, 3})
          for (int64_t width : {1, 7, 17}) {
            ++i;
            shapes.push_back(shape_for_output(batch, kChannels[i % 5], kChannels[(i + 3) % 5],
                                              kernel, stride, pad, 1 + i % 3, width,
                                              i % stride));
          }
  return shapes;
}

// 1x1, stride 1, no padding: the path that multiplies the image without unfolding it.
std::vector<Conv2dShape> pointwise_shapes() {
  std::vector<Conv2dShape> shapes;
  for (int64_t i = 0; i < 5; ++i) {
    shapes.push_back(shape_for_output(i % 2 == 0 ? 1 : 3, kChannels[i], kChannels[4 - i], 1, 1,
                                      0, 2 + i, 3 * i + 1));
  }
  return shapes;
}

// Height and width differ in size, kernel, stride and padding, so a swapped pair shows.
const Conv2dShape kNonSquare[] = {
    {3, 3, 11, 8, 5, 3, 5, 2, 1, 1, 0},
    {2, 5, 6, 13, 4, 1, 3, 1, 3, 0, 2},
    {1, 2, 9, 7, 3, 5, 2, 3, 2, 2, 1},
};

// Padding at least as wide as the kernel: whole output rows and columns read only zeros.
const Conv2dShape kPaddingWiderThanKernel[] = {
    {2, 3, 4, 5, 4, 1, 1, 1, 1, 2, 2},
    {1, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2},
};

TEST(Conv2dForward, OutputWidths1To17) {
  for (const Conv2dShape& s : output_width_sweep()) expect_forward_matches_reference(s);
}

TEST(Conv2dForward, KernelsStridesPaddingsGrid) {
  for (const Conv2dShape& s : kernel_stride_padding_grid()) expect_forward_matches_reference(s);
}

TEST(Conv2dForward, Pointwise1x1WithoutUnfolding) {
  for (const Conv2dShape& s : pointwise_shapes()) expect_forward_matches_reference(s);
}

TEST(Conv2dForward, NonSquareKernelStridePadding) {
  for (const Conv2dShape& s : kNonSquare) expect_forward_matches_reference(s);
}

TEST(Conv2dForward, PaddingWiderThanKernel) {
  for (const Conv2dShape& s : kPaddingWiderThanKernel) expect_forward_matches_reference(s);
}

TEST(Conv2dForward, WithoutBias) {
  expect_forward_matches_reference(shape_for_output(3, 5, 16, 3, 1, 1, 4, 9), false);
  expect_forward_matches_reference(shape_for_output(1, 3, 5, 1, 1, 0, 3, 3), false);
}

TEST(Conv2dForward, BatchZeroTouchesNothing) {
  const Conv2dShape s = shape_for_output(0, 3, 4, 3, 1, 1, 5, 5);
  const auto weight = random_floats(element_count(weight_shape(s)), 7);
  const auto bias = random_floats(s.out_channels, 8);
  conv2d_forward(s, nullptr, weight.data(), bias.data(), nullptr);
}

TEST(Conv2dBackward, OutputWidths1To17) {
  for (const Conv2dShape& s : output_width_sweep()) expect_backward_matches_reference(s);
}

TEST(Conv2dBackward, KernelsStridesPaddingsGrid) {
  for (const Conv2dShape& s : kernel_stride_padding_grid()) {
    expect_backward_matches_reference(s);
  }
}

TEST(Conv2dBackward, Pointwise1x1WithoutUnfolding) {
  for (const Conv2dShape& s : pointwise_shapes()) expect_backward_matches_reference(s);
}

TEST(Conv2dBackward, NonSquareKernelStridePadding) {
  for (const Conv2dShape& s : kNonSquare) expect_backward_matches_reference(s);
}

TEST(Conv2dBackward, PaddingWiderThanKernel) {
  for (const Conv2dShape& s : kPaddingWiderThanKernel) expect_backward_matches_reference(s);
}

TEST(Conv2dBackward, SkipsInputAndBiasGradientsWhenNull) {
  for (const Conv2dShape& s : {shape_for_output(3, 3, 5, 3, 1, 1, 4, 6),
                               shape_for_output(1, 5, 3, 1, 1, 0, 2, 5)}) {
    expect_backward_matches_reference(s, false, true);
    expect_backward_matches_reference(s, true, false);
    expect_backward_matches_reference(s, false, false);
  }
}

// With fewer images than threads the batch runs image by image; with more, the threads
// split it and add up private weight gradients, including uneven splits.
TEST(Conv2dBackward, BatchBelowAtAndAboveThreadCount) {
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    SCOPED_TRACE("threads " + std::to_string(threads));
    for (int64_t batch : {1, 2, 3, 5}) {
      const Conv2dShape s = shape_for_output(batch, 3, 5, 3, 1, 1, 3, 7);
      expect_forward_matches_reference(s);
      expect_backward_matches_reference(s);
    }
  }
  set_num_threads(saved);
}

TEST(Conv2dBackward, WeightGradientRepeatsBitForBit) {
  const Conv2dShape s = shape_for_output(7, 5, 16, 3, 1, 1, 6, 9);
  const auto x = random_floats(element_count(input_shape(s)), 9);
  const auto weight = random_floats(element_count(weight_shape(s)), 10);
  const auto dy = random_floats(element_count(output_shape(s)), 11);

  for_each_isa([&] {
    std::vector<float> first(weight.size()), again(weight.size());
    std::vector<float> first_bias(s.out_channels), again_bias(s.out_channels);
    conv2d_backward(s, x.data(), weight.data(), dy.data(), nullptr, first.data(),
                    first_bias.data());
    for (int run = 0; run < 3; ++run) {
      conv2d_backward(s, x.data(), weight.data(), dy.data(), nullptr, again.data(),
                      again_bias.data());
      EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(first_bias.data(), again_bias.data(),
                               first_bias.size() * sizeof(float)));
    }
  });
}

// The gradient of an empty batch is zero; dx, x and dy are empty and must stay untouched.
TEST(Conv2dBackward, BatchZeroZeroesWeightAndBiasGradients) {
  const Conv2dShape s = shape_for_output(0, 3, 4, 3, 1, 1, 5, 5);
  const auto weight = random_floats(element_count(weight_shape(s)), 12);
  std::vector<float> dweight(weight.size(), kNaN), dbias(s.out_channels, kNaN);
  conv2d_backward(s, nullptr, weight.data(), nullptr, nullptr, dweight.data(), dbias.data());
  EXPECT_TRUE(all_close(dweight, std::vector<double>(weight.size(), 0.0), weight_shape(s), 0));
  EXPECT_TRUE(all_close(dbias, std::vector<double>(s.out_channels, 0.0), {s.out_channels}, 0));
}

}  // namespace
}  // namespace tinyconv::test
