// 2-D convolution by im2col and GEMM, NCHW, float32.
//
// For image n, the column matrix col is (C*KH*KW) x (OH*OW), row-major: row (c, kh, kw),
// column (oh, ow) holds x[n, c, oh*SH - PH + kh, ow*SW - PW + kw], or 0 in the padding. Then
//   forward          y[n]  = W (F x C*KH*KW) · col, plus bias[f] on row f
//   weight gradient  dW   += dy[n] (F x OH*OW) · col^T
//   bias gradient    db   += the sums of the rows of dy[n]
//   input gradient   dx[n] = col2im(W^T · dy[n])
// y[n] and dy[n] are (F x OH*OW) matrices as they lie in NCHW memory, so each GEMM writes
// its result in place, one output channel per row.
#include "conv2d.h"

#include <algorithm>
#include <cstring>
#include <memory>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu.h"
#include "gemm.h"

namespace tinyconv {

namespace {

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Uninitialised scratch memory: every user overwrites it before reading.
std::unique_ptr<float[]> scratch(int64_t count) {
  return std::unique_ptr<float[]>(new float[count]);
}

// Sizes of the per-image matrices.
struct ConvDims {
  int64_t channels_out, rows, pixels, image_in, image_out;

  explicit ConvDims(const Conv2dShape& s)
      : channels_out(s.out_channels),
        rows(s.in_channels * s.kernel_h * s.kernel_w),
        pixels(s.out_h() * s.out_w()),
        image_in(s.in_channels * s.in_h * s.in_w),
        image_out(s.out_channels * s.out_h() * s.out_w()) {}
};

// A 1x1 kernel with stride 1 and no padding reads every pixel once in place: col is the
// image itself and needs no unfolding.
bool col_is_image(const Conv2dShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 &&
         s.pad_h == 0 && s.pad_w == 0;
}

// Splitting the batch over the threads keeps every GEMM single-threaded and independent;
// with fewer images than threads, the images go one at a time and each GEMM uses them all.
bool split_batch(int64_t batch) {
  const int threads = num_threads();
  return threads > 1 && batch >= threads;
}

// Sets count floats to zero. The gaps between stretches of im2col are mostly a float or
// two, for which a call into the C library costs more than the stores themselves.
void zero_floats(float* p, int64_t count) {
  constexpr int64_t kShort = 16;
  if (count > kShort) {
    std::memset(p, 0, count * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < count; ++i) p[i] = 0.0f;
}

struct Span {
  int64_t begin, end;
};

// The outputs o in [0, out) whose input coordinate o*stride - pad + k lies in [0, in). The
// coordinate grows with o, so they form one span; the rest read the padding.
Span outputs_inside(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  const int64_t first = pad > k ? (pad - k + stride - 1) / stride : 0;
  const int64_t last_coordinate = in - 1 + pad - k;
  const int64_t end = last_coordinate < 0 ? 0 : last_coordinate / stride + 1;
  const int64_t begin = std::min(first, out);
  return {begin, std::max(begin, std::min(end, out))};
}

// The loop nest shared by im2col and col2im, over the rows (c, kh, kw) of channel c. Each
// row is cut into stretches: inside(at, from, count) for `count` entries col[at...] that
// read image[from], image[from + SW], ..., and outside(at, count) for `count` entries
// col[at...] that read the padding. Checking bounds per stretch rather than per entry
// leaves contiguous inner loops.
//
// With stride 1 and as many outputs as inputs per row ("same" padding), col rows and image
// rows advance in step, so the stretches of all output rows join into one long stretch
// that also passes over the padding entries between them; outside() then comes after it.
template <class Inside, class Outside>
void for_each_stretch(const Conv2dShape& s, int64_t c, Inside inside, Outside outside) {
  const int64_t out_h = s.out_h(), out_w = s.out_w();
  const bool joined = s.stride_h == 1 && s.stride_w == 1 && out_w == s.in_w;

  for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
    const Span rows = outputs_inside(s.in_h, out_h, kh, s.stride_h, s.pad_h);
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      const Span cols = outputs_inside(s.in_w, out_w, kw, s.stride_w, s.pad_w);
      const int64_t row = ((c * s.kernel_h + kh) * s.kernel_w + kw) * out_h * out_w;
      const int64_t width = cols.end - cols.begin;
      if (rows.begin == rows.end || width == 0) {
        outside(row, out_h * out_w);
        continue;
      }

      const int64_t ih = rows.begin * s.stride_h - s.pad_h + kh;
      const int64_t iw = cols.begin * s.stride_w - s.pad_w + kw;
      const int64_t from = (c * s.in_h + ih) * s.in_w + iw;
      const int64_t first = row + rows.begin * out_w + cols.begin;
      if (joined) inside(first, from, (rows.end - 1 - rows.begin) * out_w + width);

      int64_t padding = row;
      for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
        const int64_t at = first + (oh - rows.begin) * out_w;
        if (!joined) inside(at, from + (oh - rows.begin) * s.stride_h * s.in_w, width);
        outside(padding, at - padding);
        padding = at + width;
      }
      outside(padding, row + out_h * out_w - padding);
    }
  }
}

// Unfolds one image (C, H, W) into col, laid out as described at the top of the file.
// Every entry of col is written, so col needs no clearing.
void im2col(const Conv2dShape& s, const float* image, float* col,
            [[maybe_unused]] bool parallel) {
  const int64_t stride = s.stride_w;
  auto copy = [&](int64_t at, int64_t from, int64_t count) {
    const float* src = image + from;
    float* dst = col + at;
    if (stride == 1) {
      std::memcpy(dst, src, count * sizeof(float));
      return;
    }
    for (int64_t i = 0; i < count; ++i) dst[i] = src[i * stride];
  };
  auto zero = [&](int64_t at, int64_t count) { zero_floats(col + at, count); };

#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t c = 0; c < s.in_channels; ++c) for_each_stretch(s, c, copy, zero);
}

// The adjoint of im2col: folds col back into one image (C, H, W), overwriting the image,
// and adds up the entries that were read from the same pixel. The padding entries of col
// are zeroed first, as joined stretches pass over them.
void col2im(const Conv2dShape& s, float* col, float* image, [[maybe_unused]] bool parallel) {
  const int64_t stride = s.stride_w, plane = s.in_h * s.in_w;
  auto add = [&](int64_t at, int64_t from, int64_t count) {
    const float* src = col + at;
    float* dst = image + from;
    if (stride == 1) {
      for (int64_t i = 0; i < count; ++i) dst[i] += src[i];
      return;
    }
    for (int64_t i = 0; i < count; ++i) dst[i * stride] += src[i];
  };
  auto zero = [&](int64_t at, int64_t count) { zero_floats(col + at, count); };
  auto skip_inside = [](int64_t, int64_t, int64_t) {};
  auto skip_outside = [](int64_t, int64_t) {};

#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t c = 0; c < s.in_channels; ++c) {
    std::fill_n(image + c * plane, plane, 0.0f);
    for_each_stretch(s, c, skip_inside, zero);
    for_each_stretch(s, c, add, skip_outside);
  }
}

// y (channels x pixels) += bias[channel] on every pixel.
void add_channel_bias(int64_t channels, int64_t pixels, const float* bias, float* y) {
  for (int64_t f = 0; f < channels; ++f) {
    float* row = y + f * pixels;
    for (int64_t p = 0; p < pixels; ++p) row[p] += bias[f];
  }
}

// sums[channel] += the sum of row `channel` of dy (channels x pixels). Eight running sums
// let the compiler vectorise without reordering float additions on its own.
void add_channel_sums(int64_t channels, int64_t pixels, const float* dy, float* sums) {
  constexpr int kLanes = 8;
  for (int64_t f = 0; f < channels; ++f) {
    const float* row = dy + f * pixels;
    float lanes[kLanes] = {};
    int64_t p = 0;
    for (; p + kLanes <= pixels; p += kLanes) {
      for (int j = 0; j < kLanes; ++j) lanes[j] += row[p + j];
    }
    float total = 0.0f;
    for (int j = 0; j < kLanes; ++j) total += lanes[j];
    for (; p < pixels; ++p) total += row[p];
    sums[f] += total;
  }
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight,
                    const float* bias, float* y) {
  if (s.batch == 0) return;

  const ConvDims d(s);
  const int64_t col_size = col_is_image(s) ? 0 : d.rows * d.pixels;
  auto one_image = [&](int64_t n, float* col, bool parallel) {
    const float* unfolded = x + n * d.image_in;
    if (col_size > 0) {
      im2col(s, unfolded, col, parallel);
      unfolded = col;
    }
    float* out = y + n * d.image_out;
    gemm_f32(false, false, d.channels_out, d.pixels, d.rows, weight, d.rows, unfolded,
             d.pixels, out, d.pixels, false);
    if (bias != nullptr) add_channel_bias(d.channels_out, d.pixels, bias, out);
  };

  if (!split_batch(s.batch)) {
    const auto col = scratch(col_size);
    for (int64_t n = 0; n < s.batch; ++n) one_image(n, col.get(), true);
    return;
  }

#pragma omp parallel
  {
    const auto col = scratch(col_size);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.batch; ++n) one_image(n, col.get(), false);
  }
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* weight,
                     const float* dy, float* dx, float* dweight, float* dbias) {
  const ConvDims d(s);
  const int64_t weight_size = d.channels_out * d.rows;
  std::fill_n(dweight, weight_size, 0.0f);
  if (dbias != nullptr) std::fill_n(dbias, d.channels_out, 0.0f);
  if (s.batch == 0) return;

  // Adds image n's share of the weight and bias gradients into dw and db, and writes its
  // input gradient. col is reused for W^T · dy[n] once the weight gradient has read it.
  const int64_t col_size = col_is_image(s) ? 0 : d.rows * d.pixels;
  auto one_image = [&](int64_t n, float* col, float* dw, float* db, bool parallel) {
    const float* unfolded = x + n * d.image_in;
    const float* dy_n = dy + n * d.image_out;
    if (col_size > 0) {
      im2col(s, unfolded, col, parallel);
      unfolded = col;
    }
    gemm_f32(false, true, d.channels_out, d.rows, d.pixels, dy_n, d.pixels, unfolded,
             d.pixels, dw, d.rows, true);
    if (db != nullptr) add_channel_sums(d.channels_out, d.pixels, dy_n, db);
    if (dx == nullptr) return;

    float* dx_n = dx + n * d.image_in;
    float* dcol = col_size > 0 ? col : dx_n;
    gemm_f32(true, false, d.rows, d.pixels, d.channels_out, weight, d.rows, dy_n, d.pixels,
             dcol, d.pixels, false);
    if (col_size > 0) col2im(s, dcol, dx_n, parallel);
  };

  if (!split_batch(s.batch)) {
    const auto col = scratch(col_size);
    for (int64_t n = 0; n < s.batch; ++n) one_image(n, col.get(), dweight, dbias, true);
    return;
  }

  // Thread 0 accumulates into dweight and dbias; every other thread into its own partial
  // [dW | db], added in thread order at the end, so the sums do not depend on timing.
  const int threads = num_threads();
  const int64_t partial_size = weight_size + d.channels_out;
  const auto partials = scratch((threads - 1) * partial_size);

#pragma omp parallel num_threads(threads)
  {
    const int t = thread_index(), team = team_size();
    float* dw = dweight;
    float* db = dbias;
    if (t > 0) {
      dw = partials.get() + (t - 1) * partial_size;
      std::fill_n(dw, partial_size, 0.0f);
      db = dbias != nullptr ? dw + weight_size : nullptr;
    }
    const auto col = scratch(col_size);

#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.batch; ++n) one_image(n, col.get(), dw, db, false);

    const int64_t reduced = dbias != nullptr ? partial_size : weight_size;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < reduced; ++i) {
      float* total = i < weight_size ? dweight + i : dbias + (i - weight_size);
      for (int u = 1; u < team; ++u) *total += partials[(u - 1) * partial_size + i];
    }
  }
}

}  // namespace tinyconv
