// Which instruction set the kernels run on, chosen once at run time.
#pragma once

namespace tinyconv {

enum class Isa { portable, avx2 };

// True when this CPU (and the OS) can run AVX2 and FMA code.
bool cpu_has_avx2_fma();

// The path in use. On first call it is chosen from the CPU, unless the environment variable
// TINYCONV_ISA says "portable" (or "avx2", which fails on a CPU without it).
Isa active_isa();

// Switch the path, for tests and benchmarks. Throws std::invalid_argument for avx2 on a CPU
// that lacks it.
void set_isa(Isa isa);

const char* isa_name(Isa isa);

// OpenMP threads the kernels use (1 when built without OpenMP).
int num_threads();
void set_num_threads(int n);

}  // namespace tinyconv
