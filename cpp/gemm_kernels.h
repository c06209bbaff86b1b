// The micro-kernels behind gemm_f32 and the pieces they share; private to gemm*.cpp.
#pragma once

#include <cstdint>

namespace tinyconv {
namespace gemm_detail {

// Where a micro-kernel finds op(A)(i, p) in its A panel: a_panel[i * row + p * step]. The
// panel keeps the memory order of A (row-major, or k-major when A is transposed), so packing
// it is a plain copy.
struct PanelStrides {
  int64_t row;
  int64_t step;
};

// A micro-kernel computes one mr×nr tile of C = op(A) · op(B) over a slice of kc of the
// reduction, from two packed panels: the mr×kc panel of op(A) (strides above) and the kc×nr
// panel of op(B), k-major: b_panel[p * nr + j] = op(B)(p, j), one aligned row per step.
// It stores the top-left rows×cols of the tile (rows <= mr, cols <= nr) into c (row stride
// ldc), adding to what c holds when accumulate is true. The panels are zero-padded to the
// full tile, so an edge tile is computed whole and only its valid part is stored.
using MicroKernel = void (*)(int64_t kc, const float* a_panel, PanelStrides a_strides,
                             const float* b_panel, float* c, int64_t ldc, int64_t rows,
                             int64_t cols, bool accumulate);

// Packs a whole panel of nr columns of op(B) = B transposed, where column j is the
// contiguous run from[j * ld + p], p < kc, into the k-major panel[p * nr + j]: a transpose.
using PackColumns = void (*)(const float* from, int64_t ld, int64_t kc, float* panel);

// The AVX2 micro-kernel, mr = 6, nr = 16, and its packer of 16 columns (gemm_avx2.cpp).
void gemm_f32_6x16_avx2(int64_t kc, const float* a_panel, PanelStrides a_strides,
                        const float* b_panel, float* c, int64_t ldc, int64_t rows, int64_t cols,
                        bool accumulate);
void pack_16_columns_avx2(const float* from, int64_t ld, int64_t kc, float* panel);

// Measured single-precision FMA throughput of `threads` threads, in GFLOP/s (gemm_avx2.cpp).
double fma_peak_gflops_avx2(int threads);

// Stores the top-left rows×cols of a tile held in memory with row stride tile_ld into c.
inline void store_tile(const float* tile, int64_t tile_ld, float* c, int64_t ldc, int64_t rows,
                       int64_t cols, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* from = tile + i * tile_ld;
    float* to = c + i * ldc;
    for (int64_t j = 0; j < cols; ++j) to[j] = accumulate ? to[j] + from[j] : from[j];
  }
}

}  // namespace gemm_detail
}  // namespace tinyconv
