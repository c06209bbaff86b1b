"""Times tinyconv.data on CIFAR-10 against the training loop's budget.

Measures decoding both splits into an empty cache (cold), loading them again from the cache,
one epoch of augmented, shuffled training batches and one pass over the test split, then
prints the data cost of a training epoch as a share of the epoch's estimated compute time.
The goal is at most 5%.

Usage:
    python bench/bench_data.py [--data DIR] [--batch-size 64] [--epochs 3] [--step-ms 70 140]

DIR defaults to $TINYCONV_DATA, else ../shared/data/cifar10-jpeg beside the repository. The
cold figures include reading the files, which may already sit in the OS page cache.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tinyconv import data


def default_data_dir():
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
    return Path(os.environ.get("TINYCONV_DATA") or default)


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def seconds_per_pass(loader):
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="augmented epochs to time")
    parser.add_argument(
        "--step-ms",
        type=float,
        nargs="+",
        default=[70.0, 140.0],
        help="estimated training step (forward + backward + update) per batch, in ms",
    )
    args = parser.parse_args()

    print(f"data: {args.data} ({data.find_dataset(args.data)})")
    with tempfile.TemporaryDirectory(prefix="tinyconv-bench-") as cache_dir:
        train, cold_train = timed(lambda: data.load_split(args.data, True, cache_dir=cache_dir))
        test, cold_test = timed(lambda: data.load_split(args.data, False, cache_dir=cache_dir))
        _, cached_train = timed(lambda: data.load_split(args.data, True, cache_dir=cache_dir))
        _, cached_test = timed(lambda: data.load_split(args.data, False, cache_dir=cache_dir))

    train_loader = data.Loader(train.images, train.labels, args.batch_size, augment=True)
    augmented = statistics.median(seconds_per_pass(train_loader) for _ in range(args.epochs))
    test_loader = data.Loader(test.images, test.labels, args.batch_size, shuffle=False)
    evaluation = seconds_per_pass(test_loader)

    print(f"cold decode + cache write   train {len(train):6d} images  {cold_train:6.2f} s")
    print(f"                            test  {len(test):6d} images  {cold_test:6.2f} s")
    print(f"cached load                 train                {cached_train:6.2f} s")
    print(f"                            test                 {cached_test:6.2f} s")
    print(
        f"augmented epoch, batch {args.batch_size:3d}  {len(train_loader)} batches"
        f"         {augmented:6.2f} s  (median of {args.epochs}), "
        f"{augmented / len(train_loader) * 1e3:.2f} ms/batch"
    )
    print(f"test pass, no augmentation  {len(test_loader)} batches          {evaluation:6.2f} s")

    # A run pays the cached load once; counting it in every epoch bounds the share from above.
    per_epoch = cached_train + cached_test + augmented + evaluation
    print(f"data cost per epoch (loads + augmented epoch + test pass): {per_epoch:.2f} s")
    for step_ms in args.step_ms:
        compute = len(train_loader) * step_ms / 1e3
        print(
            f"  at {step_ms:5.1f} ms/step the epoch computes {compute:6.1f} s: data "
            f"{100 * per_epoch / compute:4.1f}% (augmentation alone "
            f"{100 * augmented / compute:4.1f}%)"
        )


if __name__ == "__main__":
    main()
