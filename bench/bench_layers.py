"""Times tinyconv's layers against torch's, one layer of the network at a time.

For each of the four 3x3 convolutions (padding 1) and the two 2x2 max-pools of the network, at
batch 64, it times the forward pass and the backward pass, the backward split into its input
and weight gradients, for tinyconv and for torch in the same process on the same number of
threads. Each time is the best of --repeats runs after warm-up.

Neither library computes the input gradient alone in the way the other does (tinyconv's
conv2d_backward always computes the weight gradient), so for both the input-gradient time is
taken as (input + weight gradients) minus (weight gradient alone).

    python bench/bench_layers.py [--threads N] [--repeats R] [--batch B] [--isa portable]
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import tinyconv
from tinyconv import _kernels, ops

# (name, in_channels, out_channels, height = width)
CONV_LAYERS = [
    ("conv1 3->16 @32", 3, 16, 32),
    ("conv2 16->32 @32", 16, 32, 32),
    ("conv3 32->64 @16", 32, 64, 16),
    ("conv4 64->128 @16", 64, 128, 16),
]
# (name, channels, height = width): the pools that follow conv2 and conv4.
POOL_LAYERS = [
    ("pool1 32ch @32", 32, 32),
    ("pool2 128ch @16", 128, 16),
]
WARMUP = 2
# Idle time before each timed run: OpenMP threads spin for a while after a parallel region, and
# those of the library that ran last would otherwise take cores from the one being timed.
PAUSE_SECONDS = 0.05
LIBRARIES = ("tinyconv", "torch")


def best_seconds(runs, repeats):
    """The best time of each callable in `runs`, a dict. One repeat runs every callable once,
    so that a change in the machine's load during the benchmark touches all of them alike;
    each run starts after a short pause (see PAUSE_SECONDS)."""
    for run in runs.values():
        for _ in range(WARMUP):
            run()

    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, run in runs.items():
            time.sleep(PAUSE_SECONDS)
            start = time.perf_counter()
            run()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def conv_timings(batch, in_channels, out_channels, size, repeats):
    """{pass: (tinyconv seconds, torch seconds)} for one 3x3, padding-1 convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, in_channels, size, size), dtype=np.float32)
    weight = rng.standard_normal((out_channels, in_channels, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(out_channels, dtype=np.float32)
    dy = rng.standard_normal((batch, out_channels, size, size), dtype=np.float32)
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, weight, bias, dy))

    def torch_backward(input_grad):
        # What autograd calls for conv2d; the mask picks (input, weight, bias) gradients.
        torch.ops.aten.convolution_backward(tdy, tx, tw, [out_channels], [1, 1], [1, 1], [1, 1],
                                            False, [0, 0], 1, [input_grad, True, True])

    def ours_backward(input_grad):
        ops.conv2d_backward(x, weight, dy, padding=1, input_grad=input_grad)

    with torch.no_grad():
        best = best_seconds({
            ("forward", "tinyconv"): lambda: ops.conv2d_forward(x, weight, bias, padding=1),
            ("forward", "torch"): lambda: F.conv2d(tx, tw, tb, padding=1),
            ("weight", "tinyconv"): lambda: ours_backward(False),
            ("weight", "torch"): lambda: torch_backward(False),
            ("both", "tinyconv"): lambda: ours_backward(True),
            ("both", "torch"): lambda: torch_backward(True),
        }, repeats)

    def per_library(seconds):
        return tuple(seconds(library) for library in LIBRARIES)

    return {
        "forward": per_library(lambda lib: best["forward", lib]),
        "backward-input": per_library(lambda lib: best["both", lib] - best["weight", lib]),
        "backward-weight": per_library(lambda lib: best["weight", lib]),
        "forward+backward": per_library(lambda lib: best["forward", lib] + best["both", lib]),
    }


def pool_timings(batch, channels, size, repeats):
    """{pass: (tinyconv seconds, torch seconds)} for one 2x2, stride-2 max-pool."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    y, indices = ops.maxpool2d_forward(x)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    tx, tdy, tindices = (torch.from_numpy(a) for a in (x, dy, indices))

    best = best_seconds({
        ("forward", "tinyconv"): lambda: ops.maxpool2d_forward(x),
        ("forward", "torch"): lambda: F.max_pool2d(tx, 2, return_indices=True),
        ("backward", "tinyconv"): lambda: ops.maxpool2d_backward(dy, indices, x.shape),
        ("backward", "torch"): lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            tdy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, tindices),
    }, repeats)

    timings = {name: tuple(best[name, lib] for lib in LIBRARIES)
               for name in ("forward", "backward")}
    timings["forward+backward"] = tuple(best["forward", lib] + best["backward", lib]
                                        for lib in LIBRARIES)
    return timings


def conv_rate(batch, in_channels, out_channels, size, pass_name):
    """GFLOP of a pass: each of forward, input and weight gradients is one multiply-add per
    weight per output pixel."""
    one_pass = 2 * batch * out_channels * in_channels * 9 * size * size / 1e9
    return one_pass * (3 if pass_name == "forward+backward" else 1), "GFLOP/s"


def pool_rate(batch, channels, size, pass_name):
    """GB each pass moves at least: forward reads x and writes y and int64 indices; backward
    reads dy and indices and writes dx."""
    inputs = batch * channels * size * size
    outputs = inputs // 4
    moved = {"forward": 4 * inputs + 12 * outputs, "backward": 12 * outputs + 4 * inputs}
    moved["forward+backward"] = moved["forward"] + moved["backward"]
    return moved[pass_name] / 1e9, "GB/s"


def print_rows(name, timings, rate):
    for pass_name, (ours, theirs) in timings.items():
        amount, unit = rate(pass_name)
        print(f"{name:<18} {pass_name:<17} {ours * 1e3:9.2f} {amount / ours:10.1f} "
              f"{theirs * 1e3:9.2f} {amount / theirs:10.1f} {unit:<8} {theirs / ours:6.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="threads for both (default: tinyconv's)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs, the best is kept")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--isa", choices=["avx2", "portable"], help="tinyconv's SIMD path")
    args = parser.parse_args()

    if args.threads is not None:
        tinyconv.set_num_threads(args.threads)
    if args.isa is not None:
        _kernels.set_isa(args.isa)
    torch.set_num_threads(tinyconv.get_num_threads())

    print(f"batch {args.batch}, {tinyconv.get_num_threads()} threads, tinyconv {tinyconv.isa()}, "
          f"torch {torch.__version__}, best of {args.repeats}")
    print("ratio = torch time / tinyconv time (> 1: tinyconv is faster); backward-input is "
          "(input + weight gradients) - (weight gradient alone)")
    print(f"{'layer':<18} {'pass':<17} {'ours ms':>9} {'ours rate':>10} {'torch ms':>9} "
          f"{'torch rate':>10} {'unit':<8} {'ratio':>6}")
    for name, in_channels, out_channels, size in CONV_LAYERS:
        shape = (args.batch, in_channels, out_channels, size)
        print_rows(name, conv_timings(*shape, args.repeats),
                   lambda pass_name, shape=shape: conv_rate(*shape, pass_name))
    for name, channels, size in POOL_LAYERS:
        shape = (args.batch, channels, size)
        print_rows(name, pool_timings(*shape, args.repeats),
                   lambda pass_name, shape=shape: pool_rate(*shape, pass_name))


if __name__ == "__main__":
    main()
