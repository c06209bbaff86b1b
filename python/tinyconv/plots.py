"""PNG plots of a training run, drawn with matplotlib's Agg renderer.

Each figure gets its own Agg canvas instead of going through pyplot, so plotting needs no
display and leaves the backend of a program that imports tinyconv alone.
"""

from __future__ import annotations

import numpy as np


def _figure(width, height):
    # Imported here: matplotlib takes a second or more to load, which commands that draw
    # nothing (tinyconv info, --help) should not pay.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure

def plot_curves(rows, path):
    """Training loss, and train and test accuracy, against the epoch (rows as metrics.csv)."""
    epochs = [int(row["epoch"]) for row in rows]
    figure = _figure(10, 4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    loss_axes.plot(epochs, [float(row["loss"]) for row in rows], marker="o")
    loss_axes.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")

    for field, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        accuracy_axes.plot(epochs, [100 * float(row[field]) for row in rows], marker="o",
                           label=label)
    accuracy_axes.set(title="accuracy", xlabel="epoch", ylabel="%")
    accuracy_axes.legend()

    from matplotlib.ticker import MaxNLocator

    for axes in (loss_axes, accuracy_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_confusion(matrix, classes, path):
    """The confusion matrix, true class down, predicted class across, with its counts."""
    figure = _figure(8, 7)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)

    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right")
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted", ylabel="true", title="confusion matrix (test set)")
    # Dark cells get white digits so that the counts stay readable.
    threshold = matrix.max() / 2
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")

    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_predictions(images, labels, predicted, classes, path, count=32, columns=8):
    """`count` uint8 NCHW images picked evenly through the set (which is often sorted by
    class), each titled "predicted (true)", in green when right and red when wrong."""
    picked = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).astype(int))
    rows = -(-len(picked) // columns)
    figure = _figure(1.6 * columns, 1.8 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)

    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, picked):
        axes.imshow(images[index].transpose(1, 2, 0))
        right = predicted[index] == labels[index]
        axes.set_title(f"{classes[predicted[index]]}\n({classes[labels[index]]})", fontsize=8,
                       color="green" if right else "red")

    # Fixed margins: tight_layout over dozens of axes costs seconds.
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.1,
                           hspace=0.5)
    figure.savefig(path, dpi=100)
