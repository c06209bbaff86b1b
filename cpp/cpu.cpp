#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tinyconv {

namespace {

Isa isa_from_environment() {
  const char* wanted = std::getenv("TINYCONV_ISA");
  if (wanted == nullptr || *wanted == '\0') {
    return cpu_has_avx2_fma() ? Isa::avx2 : Isa::portable;
  }
  if (std::strcmp(wanted, "portable") == 0) return Isa::portable;
  if (std::strcmp(wanted, "avx2") == 0) {
    if (!cpu_has_avx2_fma()) {
      throw std::invalid_argument("TINYCONV_ISA=avx2, but this CPU has no AVX2 and FMA");
    }
    return Isa::avx2;
  }
  throw std::invalid_argument(std::string("TINYCONV_ISA must be 'portable' or 'avx2', got '") +
                              wanted + "'");
}

std::atomic<int> chosen{-1};

}  // namespace

bool cpu_has_avx2_fma() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  // __builtin_cpu_supports also checks that the OS saves the YMM registers (OSXSAVE/XGETBV).
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

Isa active_isa() {
  int isa = chosen.load(std::memory_order_relaxed);
  if (isa < 0) {
    isa = static_cast<int>(isa_from_environment());
    chosen.store(isa, std::memory_order_relaxed);
  }
  return static_cast<Isa>(isa);
}

void set_isa(Isa isa) {
  if (isa == Isa::avx2 && !cpu_has_avx2_fma()) {
    throw std::invalid_argument("this CPU has no AVX2 and FMA");
  }
  chosen.store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* isa_name(Isa isa) { return isa == Isa::avx2 ? "avx2" : "portable"; }

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

}  // namespace tinyconv
