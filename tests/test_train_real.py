"""Two epochs on real CIFAR-10 images: the network must learn, not merely run."""

import pytest

from tinyconv.data import load_split
from tinyconv.train import Recipe, train


@pytest.mark.slow
def test_two_epochs_on_5000_images_reach_35_percent_and_the_loss_falls(tmp_path, cifar10_root):
    root = cifar10_root
    train_split = load_split(root, train=True, limit=5000, cache_dir=tmp_path / "cache")
    test_split = load_split(root, train=False, limit=1000, cache_dir=tmp_path / "cache")

    rows = train(Recipe(epochs=2, limit_train=5000), train_split, test_split,
                 tmp_path / "run", progress=False)

    losses = [float(row["loss"]) for row in rows]
    accuracy = float(rows[-1]["test_accuracy"])
    assert losses[1] < losses[0], f"loss per epoch {losses}"
    assert accuracy >= 0.35, f"test accuracy {accuracy:.2%} after 2 epochs, expected >= 35%"
