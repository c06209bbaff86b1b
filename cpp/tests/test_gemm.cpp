// gemm_f32 against a naive triple loop in double, on both SIMD paths, across tile, block and
// thread edges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cpu.h"
#include "gemm.h"

namespace tinyconv {
namespace {

// The tile and block sizes the edges below are chosen around (gemm.cpp): the AVX2 tile is
// 6×16, the portable one 4×12; blocks are at most 144 rows, 256 deep and 960 columns.
constexpr int64_t kTileRows = 6;
constexpr int64_t kTileCols = 16;
constexpr int64_t kBlockK = 256;
constexpr int64_t kBlockM = 144;
constexpr int64_t kBlockN = 960;

// Written around and, when not accumulating, into C: a value a correct kernel never reads
// back or leaves behind.
const float kUntouched = std::numeric_limits<float>::quiet_NaN();

struct Case {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 1;
  int64_t n = 1;
  int64_t k = 1;
  bool accumulate = false;
  int64_t pad = 0;  // extra elements at the end of every row of A, B and C (submatrix views)

  int64_t lda() const { return (trans_a ? m : k) + pad; }
  int64_t ldb() const { return (trans_b ? k : n) + pad; }
  int64_t ldc() const { return n + pad; }

  std::string describe() const {
    std::ostringstream out;
    out << "m=" << m << " n=" << n << " k=" << k << " trans_a=" << trans_a
        << " trans_b=" << trans_b << " accumulate=" << accumulate << " pad=" << pad
        << " isa=" << isa_name(active_isa()) << " threads=" << num_threads();
    return out.str();
  }
};

std::vector<float> random_values(int64_t count, std::mt19937* rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = value(*rng);
  return values;
}

// Sets the last `pad` elements of every row of a matrix with rows of `ld` to kUntouched.
void mark_padding(std::vector<float>* matrix, int64_t ld, int64_t pad) {
  for (size_t row = 0; row < matrix->size(); row += static_cast<size_t>(ld)) {
    for (int64_t j = ld - pad; j < ld; ++j) (*matrix)[row + static_cast<size_t>(j)] = kUntouched;
  }
}

// The operands of a case. The padding of A and B, C's padding and, without accumulate, C's
// body are kUntouched, so that a read outside the views or of C, or a stray write, shows.
struct Operands {
  std::vector<float> a;
  std::vector<float> b;
  std::vector<float> c;

  explicit Operands(const Case& t) {
    std::mt19937 rng(static_cast<uint32_t>(t.m * 7919 + t.n * 104729 + t.k * 15485863));
    a = random_values((t.trans_a ? t.k : t.m) * t.lda(), &rng);
    b = random_values((t.trans_b ? t.n : t.k) * t.ldb(), &rng);
    c = random_values(t.m * t.ldc(), &rng);
    mark_padding(&a, t.lda(), t.pad);
    mark_padding(&b, t.ldb(), t.pad);
    mark_padding(&c, t.ldc(), t.accumulate ? t.pad : t.ldc());
  }
};

float op_a(const Case& t, const std::vector<float>& a, int64_t i, int64_t p) {
  return t.trans_a ? a[p * t.lda() + i] : a[i * t.lda() + p];
}

float op_b(const Case& t, const std::vector<float>& b, int64_t p, int64_t j) {
  return t.trans_b ? b[j * t.ldb() + p] : b[p * t.ldb() + j];
}

void run_gemm(const Case& t, Operands* x) {
  gemm_f32(t.trans_a, t.trans_b, t.m, t.n, t.k, x->a.data(), t.lda(), x->b.data(), t.ldb(),
           x->c.data(), t.ldc(), t.accumulate);
}

// Checks every element of x.c, the result of the case from C's values `before`, against the
// triple loop in double, within 1e-6 × (k + 1) of the sum of magnitudes of its terms (float
// rounding grows with the reduction length), and that C's padding is untouched. Reports the
// first bad element.
void expect_matches_reference(const Case& t, const Operands& x, const std::vector<float>& before) {
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.ldc(); ++j) {
      const float got = x.c[i * t.ldc() + j];
      if (j >= t.n) {
        if (!std::isnan(got)) {
          ADD_FAILURE() << "padding C[" << i << "][" << j << "] was written: " << got << "; "
                        << t.describe();
          return;
        }
        continue;
      }
      double expected = t.accumulate ? before[i * t.ldc() + j] : 0.0;
      double magnitude = std::fabs(expected);
      for (int64_t p = 0; p < t.k; ++p) {
        const double term = double{op_a(t, x.a, i, p)} * double{op_b(t, x.b, p, j)};
        expected += term;
        magnitude += std::fabs(term);
      }
      const double tolerance = 1e-6 * static_cast<double>(t.k + 1) * (magnitude + 1e-30);
      if (!(std::fabs(got - expected) <= tolerance)) {
        ADD_FAILURE() << "C[" << i << "][" << j << "]: expected " << expected << ", got " << got
                      << " (tolerance " << tolerance << "); " << t.describe();
        return;
      }
    }
  }
}

// Runs the case on fresh operands and checks it against the reference.
void check_case(const Case& t) {
  Operands x(t);
  const std::vector<float> before = x.c;
  run_gemm(t, &x);
  expect_matches_reference(t, x, before);
}

// Every transpose combination, with and without accumulate.
template <class Check>
void for_each_variant(Case t, const Check& check) {
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      for (bool accumulate : {false, true}) {
        t.trans_a = trans_a;
        t.trans_b = trans_b;
        t.accumulate = accumulate;
        check(t);
      }
    }
  }
}

// Checks the m×n×k product, with rows padded by `pad`, in every variant.
void check_every_variant(int64_t m, int64_t n, int64_t k, int64_t pad = 0) {
  Case t;
  t.m = m;
  t.n = n;
  t.k = k;
  t.pad = pad;
  for_each_variant(t, check_case);
}

// Runs `body` once per SIMD path this CPU has, restoring the active one afterwards.
template <class Body>
void for_each_isa(const Body& body) {
  const Isa saved = active_isa();
  std::vector<Isa> isas{Isa::portable};
  if (cpu_has_avx2_fma()) isas.push_back(Isa::avx2);
  for (Isa isa : isas) {
    set_isa(isa);
    SCOPED_TRACE(isa_name(isa));
    body();
  }
  set_isa(saved);
}

// Sets the OpenMP thread count for a scope.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved_); }

 private:
  int saved_;
};

TEST(GemmTileEdges, EveryShapeBelowAtAndAboveOneAndTwoTiles) {
  for_each_isa([] {
    for (int64_t k : {1, 5, 17}) {
      for (int64_t m = 1; m <= 2 * kTileRows + 1; ++m) {
        for (int64_t n = 1; n <= 2 * kTileCols + 1; ++n) {
          check_every_variant(m, n, k);
        }
      }
    }
  });
}

TEST(GemmReduction, DepthsAroundOneAndTwoKcBlocks) {
  const int64_t depths[] = {1,           2,           3,           4,      7,  8,  15, 16, 31,
                            32,          63,          64,          127,    128,
                            kBlockK - 1, kBlockK,     kBlockK + 1, 300,
                            2 * kBlockK - 1, 2 * kBlockK, 2 * kBlockK + 1};
  for_each_isa([&] {
    for (int64_t k : depths) {
      for (int64_t m : {1, 6, 7, 13}) {
        for (int64_t n : {1, 16, 17, 33}) {
          check_every_variant(m, n, k);
        }
      }
    }
  });
}

TEST(GemmBlockEdges, ShapesCrossingMcKcAndNcBlocks) {
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {
      {kBlockM, 40, kBlockK},          {kBlockM + 1, 40, kBlockK + 1},
      {2 * kBlockM + 5, 33, 70},       {150, 50, 600},
      {7, kBlockN, 9},                 {7, kBlockN + 1, 9},
      {13, kBlockN + kTileCols + 3, 3},
      // Deeper than B is packed whole (2^18 floats): B goes in pieces of whole kc slices,
      // here one slice of 250, and here five (1250 deep, the last piece 1000).
      {13, 300, 2000},
      {13, 40, 6000},
  };
  for_each_isa([&] {
    for (const Shape& s : shapes) {
      check_every_variant(s.m, s.n, s.k);
    }
  });
}

TEST(GemmStrides, SubmatrixViewsWithLeadingDimensionsAboveTheMinimum) {
  for_each_isa([] {
    for (int64_t pad : {1, 3, 16}) {
      for (int64_t m : {5, 13, 150}) {
        check_every_variant(m, 37, 260, pad);
      }
    }
  });
}

TEST(GemmEmpty, ZeroRowsOrColumnsTouchNothing) {
  for_each_isa([] {
    for (bool accumulate : {false, true}) {
      std::vector<float> c(12, 4.0f);
      const std::vector<float> a(12, 1.0f);
      gemm_f32(false, false, 0, 3, 4, nullptr, 4, a.data(), 3, c.data(), 3, accumulate);
      gemm_f32(false, true, 3, 0, 4, a.data(), 4, nullptr, 4, c.data(), 3, accumulate);
      for (float v : c) EXPECT_EQ(v, 4.0f) << "accumulate=" << accumulate;
    }
  });
}

TEST(GemmEmpty, ZeroDepthZeroesCOrLeavesItWhenAccumulating) {
  for_each_isa([] {
    for (bool accumulate : {false, true}) {
      const int64_t m = 3, n = 5, ldc = 7;
      std::vector<float> c(m * ldc, 4.0f);
      gemm_f32(false, false, m, n, 0, nullptr, 1, nullptr, n, c.data(), ldc, accumulate);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          const float expected = (accumulate || j >= n) ? 4.0f : 0.0f;
          EXPECT_EQ(c[i * ldc + j], expected)
              << "C[" << i << "][" << j << "] accumulate=" << accumulate;
        }
      }
    }
  });
}

// However the work is cut among threads, every element's sum is formed in the same order as
// on one thread (a long reduction is cut in two whatever the thread count), so one and two
// threads must agree bit for bit, not just within tolerance. A tall product (600×40, short
// reduction) is cut by rows, a wide one by columns, a small deep one (64×48, 4000 deep) along
// the reduction.
TEST(GemmThreads, OneAndTwoThreadsAgreeExactly) {
  struct Shape {
    int64_t m, n, k;
  };
  for_each_isa([] {
    for (const Shape& s : {Shape{600, 40, 50}, Shape{40, 600, 50}, Shape{64, 48, 4000}}) {
      Case shape;
      shape.m = s.m;
      shape.n = s.n;
      shape.k = s.k;
      for_each_variant(shape, [](const Case& t) {
        Operands one(t);
        Operands two(t);
        {
          ThreadCount threads(1);
          run_gemm(t, &one);
        }
        ThreadCount threads(2);
        run_gemm(t, &two);
        for (size_t e = 0; e < one.c.size(); ++e) {
          if (one.c[e] != two.c[e] && !(std::isnan(one.c[e]) && std::isnan(two.c[e]))) {
            ADD_FAILURE() << "element " << e << ": 1 thread " << one.c[e] << ", 2 threads "
                          << two.c[e] << "; " << t.describe();
            return;
          }
        }
        check_case(t);
      });
    }
  });
}

// A small C with a long reduction (64×48, 4000 deep) is cut along the reduction: the halves
// are summed apart, the second into scratch that is then added into C, accumulate or not,
// on two threads or one.
TEST(GemmThreads, DepthSplitMatchesTheReference) {
  for_each_isa([] {
    for (int threads : {1, 2}) {
      ThreadCount count(threads);
      Case shape;
      shape.m = 64;
      shape.n = 48;
      shape.k = 4000;
      for_each_variant(shape, check_case);
      shape.pad = 5;
      for_each_variant(shape, check_case);
    }
  });
}

#ifdef _OPENMP
// The convolution calls gemm_f32 from inside its own parallel region, one image per thread:
// each call must then run alone on its thread and share nothing with the others.
TEST(GemmThreads, CallsFromInsideAParallelRegionStayCorrect) {
  for_each_isa([] {
    ThreadCount threads(2);
    std::vector<Case> cases(4);
    for (size_t i = 0; i < cases.size(); ++i) {
      cases[i].m = 100 + 17 * static_cast<int64_t>(i);
      cases[i].n = 60 + 5 * static_cast<int64_t>(i);
      cases[i].k = 200 + 31 * static_cast<int64_t>(i);
      cases[i].trans_b = i % 2 == 1;
      cases[i].accumulate = i / 2 == 1;
    }
    std::vector<Operands> operands(cases.begin(), cases.end());
    std::vector<Operands> initial = operands;

#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (size_t i = 0; i < cases.size(); ++i) run_gemm(cases[i], &operands[i]);

    for (size_t i = 0; i < cases.size(); ++i) {
      expect_matches_reference(cases[i], operands[i], initial[i].c);
    }
  });
}
#endif

}  // namespace
}  // namespace tinyconv
