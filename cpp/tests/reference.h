// Shared by the kernel tests: naive references written the most direct way and computed in
// double, random inputs, an element-wise comparison that reports where it fails, and a loop
// over the instruction-set paths.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d.h"
#include "cpu.h"
#include "maxpool2d.h"

namespace tinyconv::test {

using Shape = std::vector<int64_t>;

inline int64_t element_count(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return count;
}

inline std::string to_string(const Shape& shape) {
  std::ostringstream text;
  text << "(";
  for (size_t i = 0; i < shape.size(); ++i) text << (i > 0 ? ", " : "") << shape[i];
  text << ")";
  return text.str();
}

// The multi-index of flat position `flat` in a row-major array of the given shape.
inline std::string index_in(int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return to_string(index);
}

// Uniform in [-1, 1], the same for the same seed.
inline std::vector<float> random_floats(int64_t count, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = uniform(engine);
  return values;
}

// Allowed error of a float sum of `terms` products of numbers in [-1, 1], in any order.
// Partial sums of random signs stay near sqrt(terms), so each rounding is about
// sqrt(terms) * eps / 2, and `terms` of them add up like a random walk to about
// terms * eps / 2. This allows four times that, plus the result's own rounding; a wrong or
// missing term (0.3 on average) stays far above it at every size the tests use.
inline double sum_tolerance(int64_t terms) { return 2.0 * FLT_EPSILON * (terms + 1); }

// Passes when got and expected have the shape's size and agree within tolerance everywhere
// (NaN only where NaN is expected); otherwise lists the first mismatches by index.
inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<double>& expected,
                                            const Shape& shape, double tolerance) {
  const int64_t count = element_count(shape);
  if (static_cast<int64_t>(got.size()) != count ||
      static_cast<int64_t>(expected.size()) != count) {
    return ::testing::AssertionFailure() << "shape " << to_string(shape) << " holds " << count
                                         << " elements, got " << got.size() << ", expected "
                                         << expected.size();
  }

  constexpr int kShown = 5;
  int64_t bad = 0;
  std::ostringstream report;
  report.precision(9);
  for (int64_t i = 0; i < count; ++i) {
    const double want = expected[i], have = got[i];
    const bool close = std::isnan(want) ? std::isnan(have)
                                        : want == have || std::fabs(want - have) <= tolerance;
    if (close) continue;
    if (bad++ < kShown) {
      report << "\n  index " << index_in(i, shape) << ": expected " << want << ", got "
             << have;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << count << " elements of shape " << to_string(shape)
         << " differ by more than " << tolerance << ":" << report.str();
}

// Runs body once on every instruction-set path this CPU has, then restores the path in use.
template <class Body>
void for_each_isa(Body body) {
  const Isa saved = active_isa();
  std::vector<Isa> paths{Isa::portable};
  if (cpu_has_avx2_fma()) paths.push_back(Isa::avx2);
  for (Isa isa : paths) {
    set_isa(isa);
    SCOPED_TRACE(std::string("isa ") + isa_name(isa));
    body();
  }
  set_isa(saved);
}

// ---- 2-D convolution -----------------------------------------------------------------

inline Shape input_shape(const Conv2dShape& s) {
  return {s.batch, s.in_channels, s.in_h, s.in_w};
}
inline Shape weight_shape(const Conv2dShape& s) {
  return {s.out_channels, s.in_channels, s.kernel_h, s.kernel_w};
}
inline Shape output_shape(const Conv2dShape& s) {
  return {s.batch, s.out_channels, s.out_h(), s.out_w()};
}

// Calls visit(x index, weight index, y index) for every product of the convolution, with
// the bounds checked term by term: the definition, not an algorithm.
template <class Visit>
void for_each_conv2d_term(const Conv2dShape& s, Visit visit) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t f = 0; f < s.out_channels; ++f)
      for (int64_t oh = 0; oh < s.out_h(); ++oh)
        for (int64_t ow = 0; ow < s.out_w(); ++ow)
          for (int64_t c = 0; c < s.in_channels; ++c)
            for (int64_t kh = 0; kh < s.kernel_h; ++kh)
              for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
                const int64_t ih = oh * s.stride_h - s.pad_h + kh;
                const int64_t iw = ow * s.stride_w - s.pad_w + kw;
                if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
                visit(((n * s.in_channels + c) * s.in_h + ih) * s.in_w + iw,
                      ((f * s.in_channels + c) * s.kernel_h + kh) * s.kernel_w + kw,
                      ((n * s.out_channels + f) * s.out_h() + oh) * s.out_w() + ow);
              }
}

inline std::vector<double> conv2d_forward_reference(const Conv2dShape& s,
                                                    const std::vector<float>& x,
                                                    const std::vector<float>& weight,
                                                    const float* bias) {
  std::vector<double> y(element_count(output_shape(s)), 0.0);
  for_each_conv2d_term(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    y[yi] += static_cast<double>(x[xi]) * weight[wi];
  });
  if (bias != nullptr) {
    const int64_t pixels = s.out_h() * s.out_w();
    for (size_t i = 0; i < y.size(); ++i) y[i] += bias[(i / pixels) % s.out_channels];
  }
  return y;
}

struct Conv2dGradients {
  std::vector<double> dx, dweight, dbias;
};

// Each product x * w feeds y, so dy flows back along it to x (times w) and to w (times x).
inline Conv2dGradients conv2d_backward_reference(const Conv2dShape& s,
                                                 const std::vector<float>& x,
                                                 const std::vector<float>& weight,
                                                 const std::vector<float>& dy) {
  Conv2dGradients g{std::vector<double>(x.size(), 0.0),
                    std::vector<double>(weight.size(), 0.0),
                    std::vector<double>(s.out_channels, 0.0)};
  for_each_conv2d_term(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    g.dx[xi] += static_cast<double>(weight[wi]) * dy[yi];
    g.dweight[wi] += static_cast<double>(x[xi]) * dy[yi];
  });
  const int64_t pixels = s.out_h() * s.out_w();
  for (size_t i = 0; i < dy.size(); ++i) g.dbias[(i / pixels) % s.out_channels] += dy[i];
  return g;
}

// ---- 2-D max pooling -----------------------------------------------------------------

struct MaxPool2dResult {
  std::vector<double> y;
  std::vector<int64_t> argmax;
};

// Scans each window in row-major order, keeping the first largest value; a NaN always takes
// over (PyTorch's rule, so NaN propagates).
inline MaxPool2dResult maxpool2d_forward_reference(const Pool2dShape& s,
                                                   const std::vector<float>& x) {
  MaxPool2dResult r;
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const float* in = x.data() + plane * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h(); ++oh)
      for (int64_t ow = 0; ow < s.out_w(); ++ow) {
        int64_t best = oh * s.stride_h * s.in_w + ow * s.stride_w;
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t at = (oh * s.stride_h + kh) * s.in_w + ow * s.stride_w + kw;
            if (std::isnan(in[at]) || in[at] > in[best]) best = at;
          }
        r.y.push_back(in[best]);
        r.argmax.push_back(best);
      }
  }
  return r;
}

// Each output's gradient goes to the input it was taken from.
inline std::vector<double> maxpool2d_backward_reference(const Pool2dShape& s,
                                                        const std::vector<float>& dy,
                                                        const std::vector<int64_t>& argmax) {
  std::vector<double> dx(s.batch * s.channels * s.in_h * s.in_w, 0.0);
  const int64_t out_plane = s.out_h() * s.out_w();
  for (size_t o = 0; o < dy.size(); ++o) {
    dx[(o / out_plane) * s.in_h * s.in_w + argmax[o]] += dy[o];
  }
  return dx;
}

// ---- Fully connected layer -----------------------------------------------------------

// y[i][j] = sum_k x[i][k] * weight[k][j] + bias[j], weight (in, out).
inline std::vector<double> linear_forward_reference(int64_t batch, int64_t in, int64_t out,
                                                   const std::vector<float>& x,
                                                   const std::vector<float>& weight,
                                                   const float* bias) {
  std::vector<double> y(batch * out, 0.0);
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double sum = bias != nullptr ? bias[j] : 0.0;
      for (int64_t k = 0; k < in; ++k) {
        sum += static_cast<double>(x[i * in + k]) * weight[k * out + j];
      }
      y[i * out + j] = sum;
    }
  return y;
}

struct LinearGradients {
  std::vector<double> dx, dweight, dbias;
};

inline LinearGradients linear_backward_reference(int64_t batch, int64_t in, int64_t out,
                                                 const std::vector<float>& x,
                                                 const std::vector<float>& weight,
                                                 const std::vector<float>& dy) {
  LinearGradients g{std::vector<double>(batch * in, 0.0), std::vector<double>(in * out, 0.0),
                    std::vector<double>(out, 0.0)};
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t j = 0; j < out; ++j) {
      const double grad = dy[i * out + j];
      g.dbias[j] += grad;
      for (int64_t k = 0; k < in; ++k) {
        g.dx[i * in + k] += grad * weight[k * out + j];
        g.dweight[k * out + j] += grad * x[i * in + k];
      }
    }
  return g;
}

// ---- Softmax -------------------------------------------------------------------------

// exp(z_j - m) / sum_k exp(z_k - m) per row, m the row's largest logit, in double.
inline std::vector<double> softmax_reference(int64_t batch, int64_t classes,
                                             const std::vector<float>& logits) {
  std::vector<double> probs(logits.size());
  for (int64_t i = 0; i < batch; ++i) {
    const float* z = logits.data() + i * classes;
    double largest = z[0], sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) largest = std::max(largest, double{z[j]});
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(z[j] - largest);
    for (int64_t j = 0; j < classes; ++j) probs[i * classes + j] = std::exp(z[j] - largest) / sum;
  }
  return probs;
}

// The batch mean of -log softmax(z)[label], from the reference softmax.
inline double cross_entropy_reference(int64_t batch, int64_t classes,
                                      const std::vector<float>& logits,
                                      const std::vector<int64_t>& labels) {
  const std::vector<double> probs = softmax_reference(batch, classes, logits);
  double total = 0.0;
  for (int64_t i = 0; i < batch; ++i) total -= std::log(probs[i * classes + labels[i]]);
  return total / batch;
}

}  // namespace tinyconv::test
