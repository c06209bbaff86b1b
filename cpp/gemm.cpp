// Packed, cache-blocked GEMM in the manner of BLIS, on one thread:
//   for each nc-wide column block of C
//     for each kb-deep piece of the reduction: pack that piece of op(B), kc×nr panels
//       for each mc-tall row block of C
//         for each kc-deep slice of the piece: pack that block of op(A), mr×kc panels,
//           then one micro-kernel call per mr×nr tile (nr-wide columns outermost).
// A kc×nr panel of B stays in L1 while the mc×kc block of A streams past it from L2. Unlike
// BLIS, each row block of C runs through the whole piece of B before the next, so C is
// touched once per piece, not once per slice: for the network's tall products (16384 rows,
// one or two pieces) that saves trips of C to memory. The next blocks to pack are prefetched
// while the current one computes. Transposes are absorbed by the packing, so a micro-kernel
// sees one layout, and panels are zero-padded so edge tiles need no special arithmetic.
// Threads take blocks of C, or halves of a long reduction (multiply).
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu.h"
#include "gemm_kernels.h"

namespace tinyconv {

namespace {

using gemm_detail::MicroKernel;
using gemm_detail::PackColumns;
using gemm_detail::PanelStrides;

// Block sizes for Zen 3 (L1d 32 KiB, L2 512 KiB per core) and the 6×16 AVX2 tile:
//   kc 256: a kc×16 panel of B is 16 KiB, half of L1, beside a 6 KiB panel of A.
//   mc 144: an mc×kc block of A is 144 KiB, leaving most of L2 to B panels and C lines.
//   nc 960: a kc×nc slice of B is 960 KiB, and the depth of B packed at once (kb, below)
//     is at least one slice; 960 is a multiple of both tiles' widths.
// They are upper limits: a dimension is cut into equal blocks no larger than these.
constexpr int64_t kMaxBlockK = 256;
constexpr int64_t kMaxBlockM = 144;
constexpr int64_t kMaxBlockN = 960;
// B is packed kb deep at a time. Up to 1 MiB (in L3) it is packed whole, so that each row
// block of C is finished in one pass; deeper, C makes several passes anyway and B goes in
// pieces of whole kc slices within 256 KiB, half of L2, where their prefetch lands.
constexpr int64_t kMaxWholePackedB = int64_t{1} << 18;
constexpr int64_t kMaxPackedBPiece = int64_t{1} << 16;

// Below this many multiply-adds per thread a parallel region costs more than it saves.
constexpr int64_t kMinMultiplyAddsPerThread = int64_t{1} << 18;

// The reduction is cut in two (depth_parts) for a C of at most 2^17 floats (512 KiB, so the
// scratch stays in cache) and a depth of at least 2048, where the added pass over C costs
// under a thousandth of the multiply-adds.
constexpr int64_t kMaxDepthSplitC = int64_t{1} << 17;
constexpr int64_t kMinDepthSplit = 2048;

constexpr int kPortableRows = 4;
constexpr int kPortableCols = 12;

// C tile 4×12 from a 4×kc panel of op(A) and a kc×12 panel of op(B), packed as described in
// gemm_kernels.h. Plain C++ written so that GCC keeps the 48 sums in 12 SSE registers, three
// vectors per row, and the code runs on any x86-64 CPU. Each detail matters (measured, GCC
// 12): a power-of-two width makes GCC vectorise along the reduction instead, with shuffles,
// 4× slower; reading B's row into a local first keeps GCC from interchanging the loops; and
// the sums leave through a tile copied with constant indices so that they stay in registers.
void gemm_f32_4x12_portable(int64_t kc, const float* a_panel, PanelStrides a_strides,
                            const float* b_panel, float* c, int64_t ldc, int64_t rows,
                            int64_t cols, bool accumulate) {
  float acc[kPortableRows][kPortableCols] = {};
  for (int64_t p = 0; p < kc; ++p) {
    float b_row[kPortableCols];
    for (int j = 0; j < kPortableCols; ++j) b_row[j] = b_panel[p * kPortableCols + j];
    const float* a = a_panel + p * a_strides.step;
    for (int i = 0; i < kPortableRows; ++i) {
      const float a_value = a[i * a_strides.row];
      for (int j = 0; j < kPortableCols; ++j) acc[i][j] += a_value * b_row[j];
    }
  }

  float tile[kPortableRows * kPortableCols];
  for (int i = 0; i < kPortableRows; ++i) {
    for (int j = 0; j < kPortableCols; ++j) tile[i * kPortableCols + j] = acc[i][j];
  }
  gemm_detail::store_tile(tile, kPortableCols, c, ldc, rows, cols, accumulate);
}

// Packs Cols contiguous runs of kc floats, from[j * ld + p], into panel[p * Cols + j].
template <int64_t Cols>
void pack_columns_portable(const float* from, int64_t ld, int64_t kc, float* panel) {
  for (int64_t p = 0; p < kc; ++p) {
    for (int64_t j = 0; j < Cols; ++j) panel[p * Cols + j] = from[j * ld + p];
  }
}

// A micro-kernel, its tile shape and its packer of transposed B, as template arguments so
// that the packing and the loops around the kernel know the tile at compile time.
template <int64_t Rows, int64_t Cols, MicroKernel Run, PackColumns Pack>
struct TileKernel {
  static constexpr int64_t mr = Rows;
  static constexpr int64_t nr = Cols;
  static constexpr MicroKernel run = Run;
  static constexpr PackColumns pack_columns = Pack;
};

using Avx2Tile = TileKernel<6, 16, gemm_detail::gemm_f32_6x16_avx2,
                            gemm_detail::pack_16_columns_avx2>;
using PortableTile = TileKernel<kPortableRows, kPortableCols, gemm_f32_4x12_portable,
                                pack_columns_portable<kPortableCols>>;

// A line length known at compile time, which turns a short copy into a few vector moves.
template <int64_t N>
using Fixed = std::integral_constant<int64_t, N>;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t round_up(int64_t a, int64_t step) { return ceil_div(a, step) * step; }

// The block size that cuts `total` into the fewest blocks of at most `limit`, as equal as a
// multiple of `step` allows (limit is a multiple of step), so no block is a thin remainder.
int64_t even_block(int64_t total, int64_t limit, int64_t step) {
  return round_up(ceil_div(total, ceil_div(total, limit)), step);
}

// A block of a matrix as it lies in memory: `lines` runs of `length` contiguous floats, each
// run `ld` floats after the previous one.
struct MemoryBlock {
  const float* first;
  int64_t ld;
  int64_t lines;
  int64_t length;
};

// op(X) seen as a strided view: element (r, c) is data[r * row_stride + c * col_stride].
struct Operand {
  const float* data;
  int64_t row_stride;
  int64_t col_stride;

  Operand(const float* x, int64_t ld, bool transposed)
      : data(x), row_stride(transposed ? 1 : ld), col_stride(transposed ? ld : 1) {}

  const float* at(int64_t r, int64_t c) const { return data + r * row_stride + c * col_stride; }

  // The view starting at element (r, c).
  Operand shifted(int64_t r, int64_t c) const {
    Operand view = *this;
    view.data = at(r, c);
    return view;
  }

  // True when the rows of op(X) are contiguous, false when its columns are.
  bool row_major() const { return col_stride == 1; }

  // The rows×cols block of op(X) at (r, c), in memory order.
  MemoryBlock block(int64_t r, int64_t c, int64_t rows, int64_t cols) const {
    if (row_major()) return {at(r, c), row_stride, rows, cols};
    return {at(r, c), col_stride, cols, rows};
  }
};

// Copies a block into the dense padded_lines×padded_length array at `to`, zero-filling the
// padding. Length is int64_t or, for the short lines of panels, Fixed<N>.
template <typename Length>
void copy_padded(const MemoryBlock& from, int64_t padded_lines, Length padded_length,
                 float* to) {
  for (int64_t line = 0; line < from.lines; ++line) {
    const float* source = from.first + line * from.ld;
    float* target = to + line * padded_length;
    if (from.length == padded_length) {
      std::memcpy(target, source, sizeof(float) * padded_length);
    } else {
      for (int64_t x = 0; x < from.length; ++x) target[x] = source[x];
      for (int64_t x = from.length; x < padded_length; ++x) target[x] = 0.0f;
    }
  }
  std::fill(to + from.lines * padded_length, to + padded_lines * padded_length, 0.0f);
}

// Packs rows of op(A), a kc-deep slice, into panels of mr rows. A panel keeps the memory
// order of A, so packing is a plain copy whatever the transposition: row-major
// (panel[i * kc + p]) or, for a transposed A, k-major (panel[p * mr + i]). The micro-kernel
// reads it through the strides returned.
template <int64_t MR>
PanelStrides pack_a_panels(const Operand& a, int64_t rows, int64_t kc, float* packed) {
  for (int64_t first = 0; first < rows; first += MR) {
    const MemoryBlock from = a.block(first, 0, std::min(MR, rows - first), kc);
    float* panel = packed + first * kc;
    if (a.row_major()) {
      copy_padded(from, MR, kc, panel);
    } else {
      copy_padded(from, kc, Fixed<MR>{}, panel);
    }
  }
  return a.row_major() ? PanelStrides{kc, 1} : PanelStrides{1, MR};
}

// Packs columns of op(B), a kc-deep slice, into k-major panels of nr columns,
// panel[p * nr + j], as the micro-kernel loads a row of the tile at a time. Whole panels of a
// transposed B, whose columns are contiguous in memory, go through the tile's transposing
// packer; the last partial one is gathered an element at a time.
template <class Tile>
void pack_b_panels(const Operand& b, int64_t cols, int64_t kc, float* packed) {
  constexpr int64_t nr = Tile::nr;
  for (int64_t first = 0; first < cols; first += nr) {
    const int64_t width = std::min(nr, cols - first);
    const MemoryBlock from = b.block(0, first, kc, width);
    float* panel = packed + first * kc;
    if (b.row_major()) {
      copy_padded(from, kc, Fixed<nr>{}, panel);
    } else if (width == nr) {
      Tile::pack_columns(from.first, from.ld, kc, panel);
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int64_t j = 0; j < width; ++j) panel[p * nr + j] = from.first[j * from.ld + p];
        for (int64_t j = width; j < nr; ++j) panel[p * nr + j] = 0.0f;
      }
    }
  }
}

// Walks the cache lines of a memory block that a later packing will read, a share per step,
// so that they arrive while the current block computes instead of stalling the packing.
class Prefetcher {
 public:
  // Spreads the lines of `block` over `steps` calls of step(); an empty block stops it.
  void plan(const MemoryBlock& block, int64_t steps) {
    block_ = block;
    line_ = 0;
    offset_ = 0;
    per_step_ = ceil_div(block.lines * ceil_div(block.length, kFloatsPerLine), steps);
  }

  void step() {
    for (int64_t issued = 0; issued < per_step_ && line_ < block_.lines; ++issued) {
      __builtin_prefetch(block_.first + line_ * block_.ld + offset_, 0, 2);
      offset_ += kFloatsPerLine;
      if (offset_ >= block_.length) {
        offset_ = 0;
        ++line_;
      }
    }
  }

 private:
  static constexpr int64_t kFloatsPerLine = 16;
  MemoryBlock block_{};
  int64_t line_ = 0;
  int64_t offset_ = 0;
  int64_t per_step_ = 0;
};

// A grow-only, 64-byte aligned float buffer, so packing reuses its memory across calls.
class PackBuffer {
 public:
  float* reserve(int64_t count) {
    if (count > capacity_) {
      const size_t bytes = static_cast<size_t>(round_up(count * int64_t{sizeof(float)}, 64));
      data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = count;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t capacity_ = 0;
};

// The tiles of a height×width block of C from packed panels of op(A) and op(B), depth deep.
template <class Tile>
void multiply_packed(int64_t depth, const float* packed_a, PanelStrides a_strides,
                     const float* packed_b, int64_t height, int64_t width, float* c,
                     int64_t ldc, bool accumulate, Prefetcher* next_a, Prefetcher* next_b) {
  for (int64_t jr = 0; jr < width; jr += Tile::nr) {
    for (int64_t ir = 0; ir < height; ir += Tile::mr) {
      Tile::run(depth, packed_a + ir * depth, a_strides, packed_b + jr * depth,
                c + ir * ldc + jr, ldc, std::min(Tile::mr, height - ir),
                std::min(Tile::nr, width - jr), accumulate);
      next_a->step();
      next_b->step();
    }
  }
}

// The rows×cols block of C at c, = or += op(A) · op(B) with a and b already offset to the
// block's first row and column, in the loop nest described at the top of the file. Runs on
// the calling thread, with its own packing buffers.
template <class Tile>
void multiply_block(const Operand& a, const Operand& b, int64_t rows, int64_t cols, int64_t k,
                    float* c, int64_t ldc, bool accumulate) {
  const int64_t kc = even_block(k, kMaxBlockK, 1);
  const int64_t mc = even_block(rows, kMaxBlockM, Tile::mr);
  const int64_t nc = even_block(cols, kMaxBlockN, Tile::nr);
  const int64_t kb = k * nc <= kMaxWholePackedB
                         ? k
                         : kc * std::max<int64_t>(1, kMaxPackedBPiece / (kc * nc));
  thread_local PackBuffer a_buffer;
  thread_local PackBuffer b_buffer;
  float* packed_a = a_buffer.reserve(mc * kc);
  float* packed_b = b_buffer.reserve(nc * kb);
  Prefetcher next_a;
  Prefetcher next_b;

  // The block of A packed at (ic, pc), as it lies in memory.
  const auto a_block = [&](int64_t ic, int64_t pc, int64_t end) {
    return a.block(ic, pc, std::min(mc, rows - ic), std::min(kc, end - pc));
  };

  for (int64_t jc = 0; jc < cols; jc += nc) {
    const int64_t width = std::min(nc, cols - jc);
    const int64_t padded_width = round_up(width, Tile::nr);
    for (int64_t pb = 0; pb < k; pb += kb) {
      const int64_t b_end = std::min(k, pb + kb);
      for (int64_t pc = pb; pc < b_end; pc += kc) {
        pack_b_panels<Tile>(b.shifted(pc, jc), width, std::min(kc, b_end - pc),
                            packed_b + (pc - pb) * padded_width);
      }
      const int64_t tiles = ceil_div(width, Tile::nr) * ceil_div(rows, Tile::mr);
      // The next piece of B packed: deeper in this column block, or the first of the next.
      MemoryBlock b_after{};
      if (b_end < k) {
        b_after = b.block(b_end, jc, std::min(kb, k - b_end), width);
      } else if (jc + nc < cols) {
        b_after = b.block(0, jc + nc, std::min(kb, k), std::min(nc, cols - jc - nc));
      }
      next_b.plan(b_after, tiles * ceil_div(b_end - pb, kc));

      for (int64_t ic = 0; ic < rows; ic += mc) {
        const int64_t height = std::min(mc, rows - ic);
        for (int64_t pc = pb; pc < b_end; pc += kc) {
          const int64_t depth = std::min(kc, b_end - pc);
          const PanelStrides a_strides =
              pack_a_panels<Tile::mr>(a.shifted(ic, pc), height, depth, packed_a);

          // The next block of A packed: deeper in this piece, below, or in the next piece.
          MemoryBlock a_after{};
          if (pc + kc < b_end) {
            a_after = a_block(ic, pc + kc, b_end);
          } else if (ic + mc < rows) {
            a_after = a_block(ic + mc, pb, b_end);
          } else if (b_end < k) {
            a_after = a_block(0, b_end, k);
          }
          next_a.plan(a_after, ceil_div(width, Tile::nr) * ceil_div(height, Tile::mr));

          // Only the first slice of the reduction may overwrite C; later ones add to it.
          multiply_packed<Tile>(depth, packed_a, a_strides, packed_b + (pc - pb) * padded_width,
                                height, width, c + ic * ldc + jc, ldc, accumulate || pc > 0,
                                &next_a, &next_b);
        }
      }
    }
  }
}

// A small C with a long reduction is computed as two halves of the reduction, the second into
// scratch that is added into C at the end: on two threads the halves run side by side, where
// cutting C would have each thread pack all of the long B (or A). The cut depends on the shape
// alone, never on the thread count, so results have the same bits on any number of threads.
int64_t depth_parts(int64_t m, int64_t n, int64_t k) {
  return m * n <= kMaxDepthSplitC && k >= kMinDepthSplit ? 2 : 1;
}

// How the product is cut into work items, one per thread: the reduction into depth parts
// and, in each, C into row_blocks × col_blocks blocks.
struct Cut {
  int64_t parts;
  int64_t part_depth;
  int64_t row_blocks;
  int64_t col_blocks;
  int64_t block_rows;
  int64_t block_cols;

  int64_t items() const { return parts * row_blocks * col_blocks; }
};

// The cut whose blocks of C minimise a thread's time, in sixteenths of a cycle: its
// multiply-adds (block area × depth, 16 per cycle) plus its packing (each thread packs all of
// op(A) for its rows and of op(B) for its columns, (height + width) × depth elements at about
// a cycle each, as they come from memory). Blocks are whole tiles, so only the last block in
// each direction has edge tiles.
Cut choose_cut(int64_t threads, int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr) {
  const int64_t parts = depth_parts(m, n, k);
  const int64_t blocks = std::max<int64_t>(1, threads / parts);
  Cut best{parts, ceil_div(k, parts), 1, 1, m, n};
  int64_t best_cost = -1;
  for (int64_t row_blocks = 1; row_blocks <= blocks; ++row_blocks) {
    if (blocks % row_blocks != 0) continue;
    const int64_t col_blocks = blocks / row_blocks;
    const int64_t height = round_up(ceil_div(m, row_blocks), mr);
    const int64_t width = round_up(ceil_div(n, col_blocks), nr);
    const int64_t cost = height * width + 16 * (height + width);
    if (best_cost < 0 || cost < best_cost) {
      best.row_blocks = row_blocks;
      best.col_blocks = col_blocks;
      best.block_rows = height;
      best.block_cols = width;
      best_cost = cost;
    }
  }
  return best;
}

// Work item `item` of the cut: the first depth part goes to C as asked, the others overwrite
// their own m×n matrix of the scratch.
template <class Tile>
void multiply_item(const Cut& cut, int64_t item, const Operand& a, const Operand& b, int64_t m,
                   int64_t n, int64_t k, float* c, int64_t ldc, bool accumulate,
                   float* scratch) {
  const int64_t part = item % cut.parts;
  const int64_t block = item / cut.parts;
  const int64_t row0 = block / cut.col_blocks * cut.block_rows;
  const int64_t col0 = block % cut.col_blocks * cut.block_cols;
  const int64_t depth0 = part * cut.part_depth;
  const int64_t rows = std::min(cut.block_rows, m - row0);
  const int64_t cols = std::min(cut.block_cols, n - col0);
  if (rows <= 0 || cols <= 0) return;
  float* target = part == 0 ? c + row0 * ldc + col0
                            : scratch + (part - 1) * m * n + row0 * n + col0;
  multiply_block<Tile>(a.shifted(row0, depth0), b.shifted(depth0, col0), rows, cols,
                       std::min(cut.part_depth, k - depth0), target, part == 0 ? ldc : n,
                       part == 0 && accumulate);
}

// Adds the scratch of the depth parts after the first into rows [begin, end) of C.
void add_depth_parts(int64_t parts, const float* scratch, int64_t m, int64_t n, int64_t begin,
                     int64_t end, float* c, int64_t ldc) {
  for (int64_t i = begin; i < end; ++i) {
    for (int64_t part = 1; part < parts; ++part) {
      const float* from = scratch + (part - 1) * m * n + i * n;
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += from[j];
    }
  }
}

// Threads worth using: one inside a parallel region (the caller already split the work),
// else as many as the problem can keep busy.
int64_t threads_for(int64_t m, int64_t n, int64_t k) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
  const int64_t by_size = std::max<int64_t>(1, m * n * k / kMinMultiplyAddsPerThread);
  return std::min<int64_t>(omp_get_max_threads(), by_size);
#else
  (void)m, (void)n, (void)k;
  return 1;
#endif
}

// C = or += op(A) · op(B), its work items (choose_cut) spread over the threads worth using.
// The threads share nothing but the read-only A and B; each writes its own block of C or of
// the scratch.
template <class Tile>
void multiply(const Operand& a, const Operand& b, int64_t m, int64_t n, int64_t k, float* c,
              int64_t ldc, bool accumulate) {
  const int64_t threads = threads_for(m, n, k);
  const Cut cut = choose_cut(threads, m, n, k, Tile::mr, Tile::nr);
  thread_local PackBuffer scratch_buffer;
  float* scratch = scratch_buffer.reserve((cut.parts - 1) * m * n);

  if (threads == 1) {
    for (int64_t item = 0; item < cut.items(); ++item) {
      multiply_item<Tile>(cut, item, a, b, m, n, k, c, ldc, accumulate, scratch);
    }
    if (cut.parts > 1) add_depth_parts(cut.parts, scratch, m, n, 0, m, c, ldc);
    return;
  }

#ifdef _OPENMP
  // An exception must not leave a parallel region: keep the first one and rethrow it after.
  std::exception_ptr failure;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t thread = omp_get_thread_num();
    const int64_t team = omp_get_num_threads();
    for (int64_t item = thread; item < cut.items(); item += team) {
      try {
        multiply_item<Tile>(cut, item, a, b, m, n, k, c, ldc, accumulate, scratch);
      } catch (...) {
#pragma omp critical(tinyconv_gemm_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (cut.parts > 1) {
#pragma omp barrier
      add_depth_parts(cut.parts, scratch, m, n, m * thread / team, m * (thread + 1) / team, c,
                      ldc);
    }
  }
  if (failure) std::rethrow_exception(failure);
#endif
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              const float* a, int64_t lda, const float* b, int64_t ldb,
              float* c, int64_t ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return;

  if (k <= 0) {
    if (!accumulate) {
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    }
    return;
  }

  const Operand a_op(a, lda, trans_a);
  const Operand b_op(b, ldb, trans_b);
  if (active_isa() == Isa::avx2) {
    multiply<Avx2Tile>(a_op, b_op, m, n, k, c, ldc, accumulate);
  } else {
    multiply<PortableTile>(a_op, b_op, m, n, k, c, ldc, accumulate);
  }
}

double fma_peak_gflops(int threads) {
  if (threads < 1) {
    throw std::invalid_argument("fma_peak_gflops needs at least one thread, got " +
                                std::to_string(threads));
  }
  if (!cpu_has_avx2_fma()) {
    throw std::runtime_error("fma_peak_gflops measures AVX2 FMA, which this CPU lacks");
  }
  return gemm_detail::fma_peak_gflops_avx2(threads);
}

}  // namespace tinyconv
