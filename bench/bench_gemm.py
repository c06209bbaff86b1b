"""Times tinyconv's matmul against torch.matmul and numpy.matmul on the network's GEMM shapes.

The shapes are the three forward products of the network, C = A · B with A m×k and B k×n:
64x8192 · 8192x128, 16384x288 · 288x64 and 16384x576 · 576x128, and the two backward
products of each, dA = dC · B^T and dB = A^T · dC, which take the transposes through the
trans_a / trans_b flags (for torch and numpy, through transposed views). Every library runs
on the same number of threads and writes into a preallocated output; each time is the best of
--repeats runs after warm-up. Each library runs its repeats back to back, after a pause:
taking turns run by run would start one library while the previous one's idle threads still
spin for work (OpenMP and OpenBLAS pools do so for a while), which on a machine with few cores
slows whichever runs next. The machine may be shared and noisy: compare within one run.

Share of peak: the peak is this machine's measured single-precision FMA throughput,
tinyconv._kernels.fma_peak_gflops(threads), which runs independent AVX2 FMA chains (enough of
them to hide the FMA latency) on every thread for about 0.2 s, i.e. what the FMA units
deliver at the clock the cores run at now (with --isa portable too: it is the machine's
peak, not the path's). Like the GEMM times, it is the best of several measurements, three
before the timings and three after, so that a busy moment cannot inflate the percentages.

    python bench/bench_gemm.py [--threads N] [--repeats R] [--isa portable|avx2]
"""

import argparse
import functools
import os
import time

WARMUP = 2
# Pause before each library's runs, so that the previous library's idle threads have stopped
# spinning for work and do not take the cores away from it.
IDLE_SECONDS = 0.2
PEAK_PROBES = 3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for every library (default: the CPUs this process may use)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--isa", choices=["avx2", "portable"], default=None,
                        help="tinyconv's SIMD path (default: the best this CPU has)")
    return parser.parse_args()


def network_products():
    """(name, m, n, k, trans_a, trans_b) of every product: op(A) m×k times op(B) k×n."""
    products = []
    for m, k, n in [(64, 8192, 128), (16384, 288, 64), (16384, 576, 128)]:
        products.append((f"C  = A·B     {m}x{k} · {k}x{n}", m, n, k, False, False))
        products.append((f"dA = dC·B^T  {m}x{n} · {n}x{k}", m, k, n, False, True))
        products.append((f"dB = A^T·dC  {k}x{m} · {m}x{n}", k, n, m, True, False))
    return products


def main():
    args = parse_args()
    # OpenBLAS (numpy) reads its thread count once, when it loads: set it before the imports.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch

    from tinyconv import _kernels, ops

    _kernels.set_num_threads(args.threads)
    if args.isa is not None:
        _kernels.set_isa(args.isa)
    threads = _kernels.get_num_threads()
    torch.set_num_threads(threads)

    def best_seconds(run, repeats):
        time.sleep(IDLE_SECONDS)
        for _ in range(WARMUP):
            run()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        return best

    def peak_gflops():
        return max(_kernels.fma_peak_gflops(threads) for _ in range(PEAK_PROBES))

    peak_before = peak_gflops()
    rng = np.random.default_rng(0)
    rows = []
    for name, m, n, k, trans_a, trans_b in network_products():
        a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        np_a = a.T if trans_a else a
        np_b = b.T if trans_b else b
        torch_a, torch_b, torch_out = (torch.from_numpy(x) for x in (a, b, out))
        torch_a = torch_a.T if trans_a else torch_a
        torch_b = torch_b.T if trans_b else torch_b
        runs = [
            functools.partial(ops.matmul, a, b, trans_a=trans_a, trans_b=trans_b, out=out),
            functools.partial(torch.matmul, torch_a, torch_b, out=torch_out),
            functools.partial(np.matmul, np_a, np_b, out=out),
        ]
        seconds = [best_seconds(run, args.repeats) for run in runs]
        rows.append((name, [2.0 * m * n * k / s * 1e-9 for s in seconds]))
    peak = max(peak_before, peak_gflops())

    print(f"GEMM, GFLOP/s, {threads} threads, tinyconv isa {_kernels.isa()}, "
          f"best of {args.repeats}; FMA peak {peak:.1f} GFLOP/s "
          f"(measured {peak_before:.1f} before the timings)")
    print(f"{'product':38} {'tinyconv':>9} {'torch':>9} {'numpy':>9} {'tc/torch':>9} "
          f"{'tc %peak':>9}")
    for name, (ours, theirs, numpys) in rows:
        print(f"{name:38} {ours:9.1f} {theirs:9.1f} {numpys:9.1f} {ours / theirs:9.2f} "
              f"{100.0 * ours / peak:8.1f}%")


if __name__ == "__main__":
    main()
