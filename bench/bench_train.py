"""Training-step time of tinyconv against PyTorch on the same network, batches and threads.

A step is forward, softmax cross-entropy, backward and the SGD update (momentum 0.9, Nesterov,
weight decay 5e-4 on the weights), batch 64 by default: the reference recipe. PyTorch trains a
to_torch() copy of the same initial weights on the same batches, in the same process, with
torch.set_num_threads equal to tinyconv's thread count.

Data loading is excluded from both: the batches (random normalised images and labels, or real
ones with --data) are made before any timing starts, and each step reads one of them.

    PYTHONPATH=python python bench/bench_train.py --steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import tinyconv
from tinyconv.model import cifar_cnn
from tinyconv.optim import SGD

LR, MOMENTUM, WEIGHT_DECAY = 0.02, 0.9, 5e-4
PAUSE_SECONDS = 0.2


def make_batches(count, batch_size, data, rng):
    """count (x, labels) pairs: real CIFAR-10 batches from data, or random ones."""
    if data is None:
        return [(rng.standard_normal((batch_size, 3, 32, 32), dtype=np.float32),
                 rng.integers(0, 10, batch_size)) for _ in range(count)]

    from tinyconv.data import Loader, load_split

    split = load_split(data, train=True, limit=count * batch_size)
    loader = Loader(split.images, split.labels, batch_size, augment=True, drop_last=True,
                    rng=rng)
    return list(loader)[:count]


def time_steps(steps, batches, warmup, rounds):
    """Median seconds per step of each step(x, labels) function, after warmup untimed steps.

    The batches are cut into `rounds` blocks and the functions take turns block by block, so
    that a slow spell of this shared machine falls on both. Each turn starts after a pause:
    OpenMP threads spin for a while after their last parallel region, and the other library's
    threads would otherwise compete with them for the two cores."""
    for x, labels in batches[:warmup]:
        for step in steps:
            step(x, labels)
    timed = batches[warmup:]
    block = max(1, len(timed) // rounds)
    times = [[] for _ in steps]
    for at in range(0, len(timed), block):
        for step, spent in zip(steps, times):
            time.sleep(PAUSE_SECONDS)
            for x, labels in timed[at:at + block]:
                start = time.perf_counter()
                step(x, labels)
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def tinyconv_step(model):
    optimizer = SGD(LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)

    def step(x, labels):
        model.loss_and_grad(x, labels)
        optimizer.step(model.parameters())

    return step


def torch_step(module):
    decayed = [p for name, p in module.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in module.named_parameters() if name.endswith("bias")]
    optimizer = torch.optim.SGD([{"params": decayed}, {"params": biases, "weight_decay": 0.0}],
                                lr=LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)

    def step(x, labels):
        optimizer.zero_grad(set_to_none=True)
        logits = module(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        loss.backward()
        optimizer.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=4,
                        help="blocks of steps in which the two libraries take turns")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="default: tinyconv's default")
    parser.add_argument("--data", help="use real batches from this dataset root")
    args = parser.parse_args()

    if args.threads is not None:
        tinyconv.set_num_threads(args.threads)
    threads = tinyconv.get_num_threads()
    torch.set_num_threads(threads)
    batches = make_batches(args.warmup + args.steps, args.batch_size, args.data,
                           np.random.default_rng(0))
    model = cifar_cnn(seed=0)
    module = model.to_torch()

    ours, theirs = time_steps([tinyconv_step(model), torch_step(module)], batches,
                              args.warmup, args.rounds)

    source = "real" if args.data else "random"
    print(f"training step, batch {args.batch_size}, {threads} threads, tinyconv on "
          f"{tinyconv.isa()}, torch {torch.__version__}, {args.steps} timed steps of "
          f"{source} batches (data loading excluded)")
    for name, seconds in (("tinyconv", ours), ("pytorch", theirs)):
        print(f"  {name:<9} {1e3 * seconds:8.1f} ms/step  "
              f"{args.batch_size / seconds:7.0f} images/s")
    print(f"  tinyconv / pytorch time: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
