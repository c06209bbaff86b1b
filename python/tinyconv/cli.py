"""The `tinyconv` command: info, train, evaluate, predict.

Exit status: 0 on success, 2 on bad input (arguments, data, checkpoint or image; one line on
stderr), 3 when training diverged, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class BadArguments(Exception):
    """argparse rejected the command line; the message is ready to print."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before its message and exits by itself; raising lets
    # main report it in one line with the same exit status as any other bad input.
    def error(self, message):
        msg = f"{self.prog}: error: {message}"
        raise BadArguments(msg)


def _number_type(convert, test, requirement):
    """An argparse type: convert the text, then insist on test(value)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not test(value):
            msg = f"must be {requirement}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


positive_int = _number_type(int, lambda v: v >= 1, "an integer >= 1")
natural_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number_type(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
natural_float = _number_type(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
momentum_float = _number_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction_float = _number_type(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _build_parser():
    from .optim import SCHEDULES
    from .train import Recipe

    recipe = Recipe()
    parser = _Parser(prog="tinyconv", description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = _Parser(add_help=False)
    common.add_argument("--threads", type=positive_int, metavar="N",
                        help="OpenMP threads for the kernels (default: all cores)")
    data = _Parser(add_help=False)
    data.add_argument("--data", default="data", metavar="DIR",
                      help="dataset root: torchvision's CIFAR10 directory or an ImageFolder "
                           "tree with train/ and test/ (default: %(default)s)")
    data.add_argument("--limit-test", type=positive_int, metavar="N",
                      help="evaluate on N test images, balanced over the classes")
    data.add_argument("--cache-dir", metavar="DIR",
                      help="where decoded images are cached (default: ~/.cache/tinyconv)")
    data.add_argument("--download", action="store_true",
                      help="download CIFAR-10 into --data when it is not there")

    info = commands.add_parser("info", help="print the version, SIMD path and threads")
    info.set_defaults(handler=_info)

    train = commands.add_parser("train", parents=[common, data], help="train the network",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.set_defaults(handler=_train)
    train.add_argument("--epochs", type=positive_int, default=recipe.epochs, metavar="N")
    train.add_argument("--batch-size", type=positive_int, default=recipe.batch_size,
                       metavar="N")
    train.add_argument("--lr", type=positive_float, default=recipe.lr,
                       help="peak learning rate")
    train.add_argument("--momentum", type=momentum_float, default=recipe.momentum)
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                       default=recipe.nesterov, help="Nesterov momentum")
    train.add_argument("--weight-decay", type=natural_float, default=recipe.weight_decay,
                       help="L2 penalty on the weights (not the biases)")
    train.add_argument("--schedule", choices=SCHEDULES, default=recipe.schedule,
                       help="learning-rate schedule over all steps")
    train.add_argument("--warmup", type=fraction_float, default=recipe.warmup,
                       metavar="FRACTION", help="share of the steps warming up (onecycle)")
    train.add_argument("--seed", type=natural_int, default=recipe.seed,
                       help="seeds the initial weights, batch order and augmentation")
    train.add_argument("--no-augment", dest="augment", action="store_false",
                       help="no random crop and flip")
    train.add_argument("--limit-train", type=positive_int, metavar="N",
                       help="train on N images, balanced over the classes")
    train.add_argument("--out", default="runs/train", metavar="DIR",
                       help="where the checkpoint, metrics.csv and plots go")
    train.add_argument("--resume", metavar="CKPT",
                       help="continue a run from its checkpoint; give the settings it started with")

    evaluate = commands.add_parser("evaluate", parents=[common, data],
                                   help="accuracy of a checkpoint on the test images")
    evaluate.set_defaults(handler=_evaluate)
    evaluate.add_argument("--checkpoint", required=True, metavar="CKPT")

    predict = commands.add_parser("predict", parents=[common],
                                  help="the 3 likeliest classes of each image")
    predict.set_defaults(handler=_predict)
    predict.add_argument("--checkpoint", required=True, metavar="CKPT")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    return parser


# Each command imports what it needs when it runs, so that `info` and --help start quickly.


def _set_threads(count):
    import tinyconv

    if count is not None:
        tinyconv.set_num_threads(count)


def _info(args):
    import tinyconv

    print(f"tinyconv {tinyconv.__version__}")
    print(f"SIMD path: {tinyconv.isa()}")
    print(f"OpenMP threads: {tinyconv.get_num_threads()}")


def _load_test_split(args):
    from .data import load_split

    return load_split(args.data, train=False, limit=args.limit_test, cache_dir=args.cache_dir,
                      download=args.download)


def _train(args):
    from . import get_num_threads, isa
    from .checkpoint import load_checkpoint
    from .data import load_split
    from .train import Recipe, train

    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    momentum=args.momentum, nesterov=args.nesterov,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    warmup=args.warmup, seed=args.seed, augment=args.augment,
                    limit_train=args.limit_train)
    _set_threads(args.threads)
    # Read before the data, so that a bad checkpoint fails at once.
    resume = load_checkpoint(args.resume) if args.resume else None
    train_split = load_split(args.data, train=True, limit=args.limit_train,
                             cache_dir=args.cache_dir, download=args.download)
    test_split = _load_test_split(args)

    print(f"training on {len(train_split)} images, testing on {len(test_split)}; "
          f"{get_num_threads()} threads, {isa()}; writing to {args.out}")
    train(recipe, train_split, test_split, args.out, resume=resume,
          progress=sys.stderr.isatty())


def _evaluate(args):
    from .checkpoint import load_checkpoint
    from .train import confusion_matrix, predict_labels

    _set_threads(args.threads)
    saved = load_checkpoint(args.checkpoint)
    model = saved.build_model()
    split = _load_test_split(args)
    if list(split.classes) != saved.classes:
        msg = f"the data's classes {list(split.classes)} are not the checkpoint's {saved.classes}"
        raise ValueError(msg)

    predicted = predict_labels(model, split.images)
    _print_evaluation(confusion_matrix(split.labels, predicted, len(saved.classes)),
                      saved.classes)


def _print_evaluation(matrix, classes):
    """Accuracy, accuracy per class, and the confusion matrix with a column per class."""
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    print(f"accuracy: {correct / total:.2%} ({correct}/{total})")

    print("per class:")
    width = max(len(name) for name in classes)
    for name, row, right in zip(classes, matrix, np.diag(matrix)):
        print(f"  {name:<{width}}  {right / max(row.sum(), 1):7.2%}")

    print("confusion matrix (rows: true class, columns: predicted class):")
    cell = max(6, len(str(matrix.max())) + 1)
    print(" " * (width + 2) + "".join(f"{name[:cell - 1]:>{cell}}" for name in classes))
    for name, row in zip(classes, matrix):
        print(f"  {name:<{width}}" + "".join(f"{count:>{cell}}" for count in row))


def _read_image(path, size):
    """uint8 (3, size, size): the image in RGB, resized when it is not size x size."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))


def _predict(args):
    from .checkpoint import load_checkpoint
    from .data import IMAGE_SIZE, normalize

    _set_threads(args.threads)
    saved = load_checkpoint(args.checkpoint)
    model = saved.build_model()
    images = np.stack([_read_image(path, IMAGE_SIZE) for path in args.images])

    probabilities = model.predict_proba(normalize(images))
    for path, probs in zip(args.images, probabilities):
        top = np.argsort(probs)[::-1][:3]
        print(f"{path}: " + ", ".join(f"{saved.classes[k]} {probs[k]:.1%}" for k in top))


def _check_simd_path():
    # The kernels choose their SIMD path on first use; asking first turns a bad TINYCONV_ISA
    # into one line of bad input rather than an error in the middle of a command.
    from . import isa

    isa()


def _one_line(error):
    return " ".join(str(error).split())


def main(argv=None):
    """Run the command in argv (default: sys.argv[1:]) and exit with its status."""
    from .train import Diverged

    try:
        args = _build_parser().parse_args(argv)
        _check_simd_path()
        args.handler(args)
    except BadArguments as error:
        print(_one_line(error), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except (ValueError, OSError) as error:
        print(f"tinyconv: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except Diverged as error:
        print(f"tinyconv: {error}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except KeyboardInterrupt:
        print("tinyconv: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0)
