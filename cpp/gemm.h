// Single-precision matrix multiply, row-major.
#pragma once

#include <cstdint>

namespace tinyconv {

// C = op(A) · op(B), or C += op(A) · op(B) when accumulate is true.
//   op(A) is m×k: A itself (m×k, row stride lda) or, with trans_a, the transpose of a k×m A.
//   op(B) is k×n: B itself (k×n, row stride ldb) or, with trans_b, the transpose of an n×k B.
//   C is m×n with row stride ldc and must not overlap A or B.
// Any of m, n, k may be 0 (k == 0 leaves C zero, or unchanged when accumulating).
// Runs on the OpenMP threads; called from inside a parallel region it runs on the calling
// thread alone, so callers can split a batch across threads and call it per item.
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              const float* a, int64_t lda, const float* b, int64_t ldb,
              float* c, int64_t ldc, bool accumulate);

// This CPU's measured single-precision FMA throughput on `threads` threads, in GFLOP/s: each
// thread runs independent AVX2 FMA chains for about 0.2 s. The benchmarks divide by it.
// Throws std::invalid_argument for threads < 1, std::runtime_error on a CPU without AVX2+FMA.
double fma_peak_gflops(int threads);

}  // namespace tinyconv
