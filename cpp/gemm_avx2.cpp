// AVX2 + FMA code of gemm_f32; compiled with -mavx2 -mfma and only called after the CPU has
// been checked (cpu.h).
#include <immintrin.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <chrono>

#include "gemm_kernels.h"

namespace tinyconv {
namespace gemm_detail {

namespace {

constexpr int kRows = 6;
constexpr int kVectors = 2;  // 8-float ymm vectors per tile row: 16 columns.

// Writes the transpose of the 8×8 block from[r * ld + q] (r, q < 8) to to[q * to_ld + r]:
// pairs of rows interleave, then pairs of pairs, then the 128-bit halves swap.
void transpose_8x8(const float* from, int64_t ld, float* to, int64_t to_ld) {
  __m256 row[8];
  for (int r = 0; r < 8; ++r) row[r] = _mm256_loadu_ps(from + r * ld);

  __m256 pair[8];
  for (int r = 0; r < 8; r += 2) {
    pair[r] = _mm256_unpacklo_ps(row[r], row[r + 1]);
    pair[r + 1] = _mm256_unpackhi_ps(row[r], row[r + 1]);
  }

  __m256 quad[8];
  for (int r = 0; r < 8; r += 4) {
    quad[r] = _mm256_shuffle_ps(pair[r], pair[r + 2], 0x44);
    quad[r + 1] = _mm256_shuffle_ps(pair[r], pair[r + 2], 0xEE);
    quad[r + 2] = _mm256_shuffle_ps(pair[r + 1], pair[r + 3], 0x44);
    quad[r + 3] = _mm256_shuffle_ps(pair[r + 1], pair[r + 3], 0xEE);
  }

  for (int q = 0; q < 4; ++q) {
    _mm256_storeu_ps(to + q * to_ld, _mm256_permute2f128_ps(quad[q], quad[q + 4], 0x20));
    _mm256_storeu_ps(to + (q + 4) * to_ld, _mm256_permute2f128_ps(quad[q], quad[q + 4], 0x31));
  }
}

}  // namespace

// C tile 6×16 from a 6×kc panel of op(A) and a kc×16 panel of op(B), packed as in
// gemm_kernels.h. Each step of p broadcasts 6 values of A, loads 2 vectors of B and issues 12
// FMAs into 12 ymm accumulators: 15 of the 16 ymm registers, and 12 independent chains cover
// Zen 3's 2 FMA pipes × 4 cycles latency with room to spare. The loops over the tile are
// unrolled fully so that the accumulators stay in registers.
void gemm_f32_6x16_avx2(int64_t kc, const float* a_panel, PanelStrides a_strides,
                        const float* b_panel, float* c, int64_t ldc, int64_t rows, int64_t cols,
                        bool accumulate) {
  // The C tile is only touched after the whole reduction; fetching it now hides the miss.
  for (int64_t i = 0; i < rows; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
  }

  __m256 acc[kRows][kVectors];
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) {
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b_panel);
    const __m256 b1 = _mm256_load_ps(b_panel + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kRows; ++i) {
      const __m256 a = _mm256_broadcast_ss(a_panel + i * a_strides.row);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
    a_panel += a_strides.step;
    b_panel += kVectors * 8;
  }

  if (rows == kRows && cols == kVectors * 8) {
#pragma GCC unroll 6
    for (int i = 0; i < kRows; ++i) {
      for (int v = 0; v < kVectors; ++v) {
        float* to = c + i * ldc + v * 8;
        const __m256 sum = accumulate ? _mm256_add_ps(_mm256_loadu_ps(to), acc[i][v])
                                      : acc[i][v];
        _mm256_storeu_ps(to, sum);
      }
    }
    return;
  }

  alignas(32) float tile[kRows * kVectors * 8];
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) {
    for (int v = 0; v < kVectors; ++v) _mm256_store_ps(tile + (i * kVectors + v) * 8, acc[i][v]);
  }
  store_tile(tile, kVectors * 8, c, ldc, rows, cols, accumulate);
}

// Panel of 16 columns of a transposed B (16 runs of kc floats, ld apart) into k-major form,
// panel[p * 16 + j]: 8×8 transposes, two per 8 steps of depth, then the leftover steps.
void pack_16_columns_avx2(const float* from, int64_t ld, int64_t kc, float* panel) {
  constexpr int64_t kCols = kVectors * 8;
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    transpose_8x8(from + p, ld, panel + p * kCols, kCols);
    transpose_8x8(from + 8 * ld + p, ld, panel + p * kCols + 8, kCols);
  }
  for (; p < kc; ++p) {
    for (int64_t j = 0; j < kCols; ++j) panel[p * kCols + j] = from[j * ld + p];
  }
}

// Each thread runs 12 independent FMA chains, more than the 2 pipes × 4 cycles of latency
// need, so the rate is bound by FMA throughput alone. x * 0.999 + 0.001 converges to 1, so the
// values stay normal numbers (denormals would slow the pipes down).
double fma_peak_gflops_avx2(int threads) {
  constexpr int kChains = 12;
  constexpr int64_t kStepsPerRound = 1 << 16;
  constexpr double kSeconds = 0.2;
  double total = 0.0;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
#else
  (void)threads;  // built without OpenMP, the kernels have one thread
#endif
  {
    __m256 chain[kChains];
    for (int i = 0; i < kChains; ++i) chain[i] = _mm256_set1_ps(static_cast<float>(i));
    const __m256 scale = _mm256_set1_ps(0.999f);
    const __m256 shift = _mm256_set1_ps(0.001f);
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    int64_t rounds = 0;
    while (elapsed < kSeconds) {
      for (int64_t s = 0; s < kStepsPerRound; ++s) {
        for (int i = 0; i < kChains; ++i) chain[i] = _mm256_fmadd_ps(chain[i], scale, shift);
      }
      // An empty asm that claims to read the chains keeps the compiler from dropping them.
      for (int i = 0; i < kChains; ++i) asm volatile("" : : "x"(chain[i]));
      ++rounds;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    const double flops = static_cast<double>(rounds) * kStepsPerRound * kChains * 8 * 2;
    total += flops / elapsed * 1e-9;
  }
  return total;
}

}  // namespace gemm_detail
}  // namespace tinyconv
