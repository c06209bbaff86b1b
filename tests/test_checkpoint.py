"""Checkpoints: round trip, atomic writes, and refusing files they cannot trust."""

import os

import numpy as np
import pytest

from tinyconv import checkpoint as checkpoint_module
from tinyconv.checkpoint import load_checkpoint, save_checkpoint
from tinyconv.model import cifar_cnn
from tinyconv.optim import SGD

CLASSES = ["cat", "dog", "frog"]


def trained_a_little(seed, rng):
    """A small model, an optimiser with momentum buffers, and a used Generator."""
    net = cifar_cnn(seed=seed, image_shape=(3, 8, 8), num_classes=3)
    optimiser = SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    net.loss_and_grad(rng.standard_normal((4, 3, 8, 8), dtype=np.float32), np.arange(4) % 3)
    optimiser.step(net.parameters())
    return net, optimiser


def save(path, net, optimiser, batch_rng, epoch=4):
    save_checkpoint(path, net, optimiser, epoch=epoch, rng=batch_rng, classes=CLASSES,
                    recipe={"lr": 0.1, "epochs": 9})


def test_round_trip_restores_weights_optimiser_epoch_and_generator(tmp_path, rng):
    net, optimiser = trained_a_little(1, rng)
    batch_rng = np.random.default_rng(11)
    batch_rng.random(5)
    save(tmp_path / "last.npz", net, optimiser, batch_rng)

    saved = load_checkpoint(tmp_path / "last.npz")
    fresh_net, _ = trained_a_little(2, rng)
    fresh_optimiser, fresh_rng = SGD(0.1, momentum=0.9), np.random.default_rng(0)
    saved.restore(fresh_net, fresh_optimiser, fresh_rng)

    for (name, ours, _), (_, back, _) in zip(net.parameters(), fresh_net.parameters()):
        assert np.array_equal(ours, back), name
    assert fresh_optimiser.steps == optimiser.steps == 1
    for name, buffer in optimiser.buffers.items():
        assert np.array_equal(fresh_optimiser.buffers[name], buffer), name
    assert np.array_equal(fresh_rng.random(8), batch_rng.random(8))
    assert (saved.epoch, saved.classes, saved.recipe) == (4, CLASSES, {"lr": 0.1, "epochs": 9})
    assert saved.build_model().architecture() == net.architecture()


def test_the_file_needs_no_pickle(tmp_path, rng):
    net, optimiser = trained_a_little(1, rng)
    save(tmp_path / "last.npz", net, optimiser, np.random.default_rng(0))

    with np.load(tmp_path / "last.npz", allow_pickle=False) as archive:
        kinds = {archive[key].dtype.kind for key in archive.files}
    assert "O" not in kinds


def test_a_crash_before_the_rename_leaves_the_old_checkpoint_whole(tmp_path, rng, monkeypatch):
    net, optimiser = trained_a_little(1, rng)
    path = tmp_path / "last.npz"
    save(path, net, optimiser, np.random.default_rng(0), epoch=1)
    before = path.read_bytes()

    def crash(src, dst):
        msg = "simulated crash"
        raise OSError(msg)

    monkeypatch.setattr(checkpoint_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save(path, net, optimiser, np.random.default_rng(0), epoch=2)

    assert path.read_bytes() == before
    assert load_checkpoint(path).epoch == 1
    assert os.listdir(tmp_path) == ["last.npz"]


def test_another_architecture_is_refused_naming_the_layer(tmp_path, rng):
    net, optimiser = trained_a_little(1, rng)
    save(tmp_path / "last.npz", net, optimiser, np.random.default_rng(0))

    wider = cifar_cnn(seed=0, image_shape=(3, 8, 8), num_classes=5)
    with pytest.raises(ValueError, match=r"another architecture: layer 13 is Linear\(.*=3\)"):
        load_checkpoint(tmp_path / "last.npz").restore(wider)


def test_another_format_version_is_refused(tmp_path, rng):
    net, optimiser = trained_a_little(1, rng)
    path = tmp_path / "last.npz"
    save(path, net, optimiser, np.random.default_rng(0))
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["format_version"] = np.array(99)
    np.savez(path, **arrays)

    with pytest.raises(ValueError, match="format version 99, this tinyconv reads version 1"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_a_truncated_file_is_refused(tmp_path, rng, keep):
    net, optimiser = trained_a_little(1, rng)
    path = tmp_path / "last.npz"
    save(path, net, optimiser, np.random.default_rng(0))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])

    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04 broken"])
def test_a_file_of_another_kind_is_refused(tmp_path, content):
    path = tmp_path / "last.npz"
    path.write_bytes(content)

    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_an_npz_without_a_version_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))

    with pytest.raises(ValueError, match="no format_version"):
        load_checkpoint(tmp_path / "other.npz")


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.npz")
