"""The training loop: epochs of SGD over shuffled, augmented batches, with evaluation,
metrics, plots and a checkpoint after every epoch.

Everything random comes from `Recipe.seed`: the initial weights from one child of its
SeedSequence, the batch order and augmentation from another. The batch Generator is saved in
each checkpoint, so a run resumed from the checkpoint of epoch k replays epochs k+1, ... as the
uninterrupted run does (bit for bit when the kernels run on one thread).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import plots
from .checkpoint import save_checkpoint
from .data import Loader
from .model import cifar_cnn
from .optim import SCHEDULES, SGD, make_schedule

METRICS_FIELDS = ("epoch", "lr", "loss", "train_accuracy", "test_accuracy", "seconds",
                  "images_per_second")
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class Recipe:
    """The settings that decide the trained weights; the defaults are the reference recipe.
    Checkpoints store it, and a run can only resume with the same recipe."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup: float = 0.15
    seed: int = 0
    augment: bool = True
    limit_train: int | None = None

    def __post_init__(self):
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("nesterov", not self.nesterov or self.momentum > 0, "off when momentum is 0"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             "a finite number >= 0"),
            ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("warmup", 0 <= self.warmup <= 1, "a fraction in [0, 1]"),
            ("limit_train", self.limit_train is None or self.limit_train >= 1, ">= 1"),
        ]
        for name, ok, requirement in checks:
            if not ok:
                msg = f"{name} must be {requirement}, got {getattr(self, name)!r}"
                raise ValueError(msg)


class Diverged(RuntimeError):
    """The loss became NaN or infinite; training stopped before updating the weights."""

    def __init__(self, loss, epoch, step, lr):
        self.loss, self.epoch, self.step, self.lr = loss, epoch, step, lr
        super().__init__(f"training diverged: loss {loss} at epoch {epoch}, step {step} "
                         f"(lr {lr:.6g}); the last checkpoint is kept")


def confusion_matrix(labels, predicted, classes):
    """counts[i, j] = how many images of class i were predicted as class j."""
    pairs = labels.astype(np.int64) * classes + predicted
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def predict_labels(model, images, batch_size=EVAL_BATCH_SIZE):
    """The most likely class of each uint8 NCHW image."""
    loader = Loader(images, np.zeros(len(images), np.int64), batch_size, shuffle=False)
    return np.concatenate([model.forward(x).argmax(axis=1) for x, _ in loader])


def _plot_test_results(out_dir, test_split, predicted):
    classes = test_split.classes
    plots.plot_confusion(confusion_matrix(test_split.labels, predicted, len(classes)), classes,
                         out_dir / "confusion.png")
    plots.plot_predictions(test_split.images, test_split.labels, predicted, classes,
                           out_dir / "predictions.png")


def _metrics_rows(path, up_to_epoch):
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [row for row in csv.DictReader(file) if int(row["epoch"]) <= up_to_epoch]


def _write_metrics(path, rows, mode="w"):
    with path.open(mode, newline="") as file:
        writer = csv.DictWriter(file, METRICS_FIELDS)
        if mode == "w":
            writer.writeheader()
        writer.writerows(rows)


def _check_same_recipe(saved, recipe, classes, saved_classes):
    current = dataclasses.asdict(recipe)
    differences = [f"{key}={saved.get(key)!r} (now {value!r})"
                   for key, value in current.items() if saved.get(key) != value]
    if differences:
        msg = ("cannot resume: the checkpoint was trained with " + ", ".join(differences)
               + "; pass the same settings to resume")
        raise ValueError(msg)
    if list(saved_classes) != list(classes):
        msg = (f"cannot resume: the checkpoint's classes {saved_classes} are not the data's "
               f"{classes}")
        raise ValueError(msg)


class _EpochStats:
    """Running mean loss and accuracy over the batches of an epoch, and its last lr."""

    def __init__(self):
        self.loss_sum = 0.0
        self.correct = 0
        self.seen = 0
        self.lr = math.nan

    def add(self, loss, logits, labels, lr):
        self.loss_sum += loss * len(labels)
        self.correct += int(np.count_nonzero(logits.argmax(axis=1) == labels))
        self.seen += len(labels)
        self.lr = lr

    @property
    def loss(self):
        return self.loss_sum / self.seen

    @property
    def accuracy(self):
        return self.correct / self.seen


def _train_epoch(model, optimizer, loader, epoch, epochs, progress):
    """One pass of SGD over the loader's batches; raises Diverged at the first non-finite
    loss, before that batch changes the weights."""
    stats = _EpochStats()
    bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
               disable=not progress)
    with bar:
        for step, (x, labels) in enumerate(bar, start=1):
            loss, logits = model.loss_and_grad(x, labels)
            if not math.isfinite(loss):
                raise Diverged(loss, epoch, step, optimizer.lr)
            stats.add(loss, logits, labels, optimizer.lr)
            optimizer.step(model.parameters())
            bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{stats.lr:.4g}", refresh=False)
    return stats


def train(recipe, train_split, test_split, out_dir, *, resume=None, progress=True, log=print):
    """Train the default network on train_split, evaluating on test_split after each epoch.

    Writes to out_dir: last.npz (checkpoint of the latest finished epoch), metrics.csv (one
    row per epoch), curves.png and, after the last epoch, confusion.png and predictions.png.
    resume: a Checkpoint (see tinyconv.checkpoint.load_checkpoint) to continue from; it must
    have been made with the same recipe. Raises Diverged when the loss stops being finite.
    Returns the metrics rows.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(train_split.classes)
    init_seed, batch_seed = np.random.SeedSequence(recipe.seed).spawn(2)
    model = cifar_cnn(seed=init_seed, image_shape=train_split.images.shape[1:],
                      num_classes=len(classes))
    loader = Loader(train_split.images, train_split.labels, recipe.batch_size, shuffle=True,
                    augment=recipe.augment, rng=np.random.default_rng(batch_seed))
    schedule = make_schedule(recipe.schedule, recipe.lr, recipe.epochs * len(loader),
                             recipe.warmup)
    optimizer = SGD(schedule, momentum=recipe.momentum, nesterov=recipe.nesterov,
                    weight_decay=recipe.weight_decay)

    start_epoch = 0
    if resume is not None:
        _check_same_recipe(resume.recipe, recipe, classes, resume.classes)
        resume.restore(model, optimizer, loader.rng)
        start_epoch = resume.epoch
        log(f"resuming after epoch {start_epoch}")
    metrics_path = out_dir / "metrics.csv"
    rows = _metrics_rows(metrics_path, start_epoch)
    _write_metrics(metrics_path, rows)

    for epoch in range(start_epoch + 1, recipe.epochs + 1):
        start = time.perf_counter()
        stats = _train_epoch(model, optimizer, loader, epoch, recipe.epochs, progress)
        seconds = time.perf_counter() - start
        predicted = predict_labels(model, test_split.images)
        test_accuracy = float(np.mean(predicted == test_split.labels))
        log(f"epoch {epoch}/{recipe.epochs}  loss {stats.loss:.4f}  "
            f"train acc {stats.accuracy:.2%}  test acc {test_accuracy:.2%}  "
            f"{seconds:.1f} s  {stats.seen / seconds:.0f} images/s")

        rows.append({"epoch": epoch, "lr": f"{stats.lr:.6g}", "loss": f"{stats.loss:.6f}",
                     "train_accuracy": f"{stats.accuracy:.6f}",
                     "test_accuracy": f"{test_accuracy:.6f}", "seconds": f"{seconds:.3f}",
                     "images_per_second": f"{stats.seen / seconds:.1f}"})
        # Metrics first: a crash before the checkpoint leaves a row that resuming drops.
        _write_metrics(metrics_path, rows[-1:], mode="a")
        save_checkpoint(out_dir / "last.npz", model, optimizer, epoch=epoch, rng=loader.rng,
                        classes=classes, recipe=dataclasses.asdict(recipe))
        plots.plot_curves(rows, out_dir / "curves.png")
        if epoch == recipe.epochs:  # the slower plots only for the trained model
            _plot_test_results(out_dir, test_split, predicted)
    return rows
