"""Tests of tinyconv.data: layout detection, decoding and its cache, the balanced subset, and the
batches (order, augmentation, normalisation) against per-image torchvision references."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import CIFAR10, ImageFolder
from torchvision.transforms import functional as tvf

from tinyconv import data

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _random_images(rng, count, size=32):
    return rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def _write_image_folders(root, rng, classes=("cat", "dog", "ship"), per_class=4):
    """train/ and test/ class folders of random PNGs (lossless, so decoding gives the pixels
    back). Returns {split: (images NCHW, labels)} in ImageFolder's sorted order."""
    written = {}
    for split in ("train", "test"):
        images = _random_images(rng, len(classes) * per_class)
        labels = np.repeat(np.arange(len(classes)), per_class)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
        written[split] = (images, labels)
    return written


def _write_cifar10_batches(root, rng, per_batch=6):
    """A cifar-10-batches-py directory in torchvision's pickle format, with made-up pixels.
    Returns {"train"|"test": (images NCHW, labels)}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train": [], "test": []}
    names = [(name, "train") for name, _ in CIFAR10.train_list]
    names += [(name, "test") for name, _ in CIFAR10.test_list]
    for name, split in names:
        images = _random_images(rng, per_batch)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as file:
            pickle.dump({"data": images.reshape(per_batch, -1), "labels": labels}, file)
        written[split].append((images, labels))
    with open(folder / CIFAR10.meta["filename"], "wb") as file:
        pickle.dump({CIFAR10.meta["key"]: list(CIFAR10_CLASSES)}, file)
    return {
        split: (np.concatenate([i for i, _ in parts]), np.concatenate([lb for _, lb in parts]))
        for split, parts in written.items()
    }


def _tree_snapshot(root):
    return sorted(
        (str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in root.rglob("*")
    )


@pytest.fixture
def image_folders(tmp_path, rng):
    root = tmp_path / "data"
    return root, _write_image_folders(root, rng)


@pytest.fixture
def decode_calls(monkeypatch):
    """Records the file lists passed to the decoder, which still decodes."""
    calls = []
    decode = data._decode_images

    def recording_decode(paths):
        calls.append(list(paths))
        return decode(paths)

    monkeypatch.setattr(data, "_decode_images", recording_decode)
    return calls


def _refuse_decoding(paths):
    msg = f"decoded {len(paths)} files although they are cached"
    raise AssertionError(msg)


# Detection


def test_find_dataset_recognises_image_folders(image_folders):
    root, _ = image_folders
    assert data.find_dataset(root) == "imagefolder"


def test_find_dataset_recognises_torchvision_cifar10_dir(tmp_path, rng):
    _write_cifar10_batches(tmp_path, rng)
    assert data.find_dataset(tmp_path) == "cifar10"


def test_find_dataset_downloads_cifar10_when_asked(tmp_path, rng, monkeypatch):
    calls = []

    class OfflineCIFAR10(CIFAR10):
        """Stands in for the download by writing made-up batches where it would put them."""

        def __init__(self, root, train=True, download=False):
            calls.append(download)
            _write_cifar10_batches(Path(root), rng)

    monkeypatch.setattr("torchvision.datasets.CIFAR10", OfflineCIFAR10)
    root = tmp_path / "new"
    assert data.find_dataset(root, download=True) == "cifar10"
    assert calls == [True]

    assert data.find_dataset(root, download=True) == "cifar10"
    assert calls == [True], "data already present is not downloaded again"


def test_find_dataset_names_a_missing_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*expected"):
        data.find_dataset(missing)


def _make_empty(root):
    root.mkdir()


def _make_other_content(root):
    (root / "notes").mkdir(parents=True)
    (root / "readme.txt").write_text("not a dataset")


def _make_train_only(root):
    (root / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "train" / "cat" / "0.png")


def _make_splits_without_class_folders(root):
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(root / split / "0.png")


def _make_class_folder_without_images(root):
    _write_image_folders(root, np.random.default_rng(0))
    (root / "test" / "frog").mkdir()
    (root / "train" / "frog").mkdir()
    (root / "train" / "frog" / "labels.txt").write_text("no image here")
    Image.new("RGB", (32, 32)).save(root / "test" / "frog" / "0.png")


def _make_different_classes(root):
    _write_image_folders(root, np.random.default_rng(0))
    (root / "test" / "frog").mkdir()
    Image.new("RGB", (32, 32)).save(root / "test" / "frog" / "0.png")


def _make_incomplete_cifar10_dir(root):
    _write_cifar10_batches(root, np.random.default_rng(0))
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_make_empty, "holds no dataset"),
        (_make_other_content, "holds no dataset"),
        (_make_train_only, "holds no dataset"),
        (_make_splits_without_class_folders, "no class folders"),
        (_make_class_folder_without_images, "frog holds no image file"),
        (_make_different_classes, "same class folders"),
        (_make_incomplete_cifar10_dir, "lacks data_batch_3"),
    ],
)
def test_find_dataset_rejects_other_layouts(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(data.DatasetLayoutError, match=message) as raised:
        data.find_dataset(root)
    assert str(root) in str(raised.value)


# Decoding


def test_load_split_reads_a_cifar10_dir(tmp_path, rng, monkeypatch):
    # torchvision checks the md5 of every batch file against the real CIFAR-10 download, which
    # made-up batches cannot pass; only that check is switched off.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    written = _write_cifar10_batches(tmp_path, rng)

    for train, split in ((True, "train"), (False, "test")):
        loaded = data.load_split(tmp_path, train=train, cache_dir=tmp_path / "cache")
        images, labels = written[split]
        np.testing.assert_array_equal(loaded.images, images)
        np.testing.assert_array_equal(loaded.labels, labels)
        assert loaded.images.flags.c_contiguous
        assert loaded.labels.dtype == np.int64
        assert loaded.classes == CIFAR10_CLASSES
    assert not (tmp_path / "cache").exists(), "pickled batches need no decode cache"


def test_load_split_decodes_image_folders(image_folders, tmp_path):
    root, written = image_folders
    for train, split in ((True, "train"), (False, "test")):
        loaded = data.load_split(root, train=train, cache_dir=tmp_path / "cache")
        images, labels = written[split]
        assert loaded.images.dtype == np.uint8
        assert loaded.images.flags.c_contiguous
        np.testing.assert_array_equal(loaded.images, images)
        np.testing.assert_array_equal(loaded.labels, labels)
        assert loaded.labels.dtype == np.int64
        assert loaded.classes == ("cat", "dog", "ship")
        assert len(loaded) == len(labels)


def test_grey_images_are_decoded_as_rgb(image_folders, tmp_path):
    root, written = image_folders
    grey = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(grey).save(root / "test" / "cat" / "000.png")

    loaded = data.load_split(root, train=False, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(loaded.images[0], np.stack([grey] * 3))
    np.testing.assert_array_equal(loaded.images[1:], written["test"][0][1:])


def test_images_of_another_size_are_rejected(image_folders, tmp_path):
    root, _ = image_folders
    Image.new("RGB", (28, 32)).save(root / "train" / "dog" / "000.png")
    with pytest.raises(data.DatasetLayoutError, match=r"000.png is 28x32, expected 32x32"):
        data.load_split(root, cache_dir=tmp_path / "cache")


def test_pooled_decode_matches_serial_decode(image_folders, tmp_path, monkeypatch):
    root, written = image_folders
    monkeypatch.setattr(data, "_FILES_PER_TASK", 5)
    monkeypatch.setattr(data, "_usable_cpus", lambda: 2)

    loaded = data.load_split(root, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(loaded.images, written["train"][0])


# The decode cache


def test_cache_is_written_under_cache_dir_and_reused(image_folders, tmp_path, monkeypatch):
    root, _ = image_folders
    cache_dir = tmp_path / "cache"
    data_before = _tree_snapshot(root)
    first = data.load_split(root, cache_dir=cache_dir)

    assert _tree_snapshot(root) == data_before, "nothing may be written beside the data"
    cached = [path.name for path in cache_dir.iterdir()]
    assert len(cached) == 1
    assert cached[0].endswith(".npy")

    monkeypatch.setattr(data, "_decode_images", _refuse_decoding)
    second = data.load_split(root, cache_dir=cache_dir)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)


def test_cache_is_found_when_root_is_spelled_differently(image_folders, tmp_path, monkeypatch):
    root, _ = image_folders
    cache_dir = tmp_path / "cache"
    data.load_split(root, cache_dir=cache_dir)
    monkeypatch.chdir(root.parent)
    monkeypatch.setattr(data, "_decode_images", _refuse_decoding)

    data.load_split(Path(root.name) / ".." / root.name, cache_dir=cache_dir)


def test_changed_file_is_decoded_afresh(image_folders, tmp_path, decode_calls):
    root, written = image_folders
    cache_dir = tmp_path / "cache"
    data.load_split(root, train=False, cache_dir=cache_dir)

    changed = root / "test" / "dog" / "004.png"
    Image.new("RGB", (32, 32), (7, 8, 9)).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    loaded = data.load_split(root, train=False, cache_dir=cache_dir)

    assert len(decode_calls) == 2
    assert len(list(cache_dir.iterdir())) == 2
    expected = written["test"][0].copy()
    expected[4] = np.array([7, 8, 9], dtype=np.uint8).reshape(3, 1, 1)
    np.testing.assert_array_equal(loaded.images, expected)


def test_touched_file_is_decoded_afresh(image_folders, tmp_path, decode_calls):
    root, _ = image_folders
    cache_dir = tmp_path / "cache"
    data.load_split(root, train=False, cache_dir=cache_dir)

    touched = root / "test" / "ship" / "010.png"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    data.load_split(root, train=False, cache_dir=cache_dir)
    assert len(decode_calls) == 2


def test_default_cache_dir_follows_xdg_cache_home(image_folders, tmp_path, monkeypatch):
    root, _ = image_folders
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "xdg" / "tinyconv"

    data.load_split(root, train=False)
    assert len(list((tmp_path / "xdg" / "tinyconv").iterdir())) == 1

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "tinyconv"


def test_unwritable_cache_warns_and_still_loads(image_folders, tmp_path):
    root, written = image_folders
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache dir cannot be created under a file")

    with pytest.warns(UserWarning, match="not cached"):
        loaded = data.load_split(root, cache_dir=blocker / "cache")
    np.testing.assert_array_equal(loaded.images, written["train"][0])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "data"]


# The balanced subset


def test_limit_picks_every_class_evenly_and_decodes_only_those(
    image_folders, tmp_path, decode_calls
):
    root, written = image_folders
    limited = data.load_split(root, limit=6, cache_dir=tmp_path / "cache")

    assert len(decode_calls) == 1
    assert len(decode_calls[0]) == 6
    np.testing.assert_array_equal(np.bincount(limited.labels), [2, 2, 2])

    # The pick keeps the split's order: its images are those of ascending positions.
    images, labels = written["train"]
    flat = images.reshape(len(images), -1)
    positions = [
        int(np.flatnonzero((flat == image.reshape(-1)).all(axis=1))[0]) for image in limited.images
    ]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(labels[positions], limited.labels)


def test_limit_pick_is_fixed_and_cached_under_its_own_key(image_folders, tmp_path):
    root, _ = image_folders
    first = data.load_split(root, limit=5, cache_dir=tmp_path / "one")
    again = data.load_split(root, limit=5, cache_dir=tmp_path / "two")
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(np.bincount(first.labels), [2, 2, 1])

    data.load_split(root, cache_dir=tmp_path / "one")
    data.load_split(root, limit=12, cache_dir=tmp_path / "one")
    names = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert len(names) == 2, "limit >= the split's size is the whole split, cached once"
    assert names[0].startswith("train-12-")
    assert names[1].startswith("train-5-")


def test_limit_pick_is_balanced_on_uneven_classes():
    labels = np.repeat(np.arange(4), [50, 3, 20, 7])
    picked = data._balanced_pick(labels, 20)

    assert len(np.unique(picked)) == 20
    assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(np.bincount(labels[picked]), [6, 3, 6, 5])


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_limit_must_be_a_positive_int(image_folders, tmp_path, limit):
    root, _ = image_folders
    with pytest.raises(ValueError, match="limit must be a positive int"):
        data.load_split(root, limit=limit, cache_dir=tmp_path / "cache")


# Batches


def test_batches_have_the_network_layout_and_keep_the_last_partial_batch(rng):
    images = _random_images(rng, 10)
    labels = np.arange(10, dtype=np.int32)

    for augment in (False, True):
        batches = list(data.Loader(images, labels, 4, augment=augment))
        assert [len(y) for _, y in batches] == [4, 4, 2]
        for x, y in batches:
            assert x.shape == (len(y), 3, 32, 32)
            assert x.dtype == np.float32
            assert x.flags.c_contiguous
            assert y.dtype == np.int64

    loader = data.Loader(images, labels, 4, drop_last=True)
    assert [len(y) for _, y in loader] == [4, 4]
    assert len(loader) == 2
    assert len(data.Loader(images, labels, 4)) == 3
    assert len(data.Loader(images, labels, 5, drop_last=True)) == 2


@pytest.mark.parametrize("batch_size", [0, -1, 2.0])
def test_batch_size_must_be_a_positive_int(rng, batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        data.Loader(_random_images(rng, 4), np.zeros(4, dtype=np.int64), batch_size)


def test_loader_rejects_images_not_in_uint8_nchw(rng):
    labels = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="uint8"):
        data.Loader(_random_images(rng, 4).astype(np.float32), labels, 2)
    with pytest.raises(ValueError, match="uint8"):
        data.Loader(_random_images(rng, 4).transpose(0, 2, 3, 1), labels, 2)
    with pytest.raises(ValueError, match="labels"):
        data.Loader(_random_images(rng, 4), labels[:3], 2)


def test_each_epoch_visits_every_image_once_in_a_new_order(rng):
    images = _random_images(rng, 50)
    loader = data.Loader(images, np.arange(50), 8, rng=3)

    orders = []
    for _ in range(2):
        order = []
        for x, y in loader:
            np.testing.assert_array_equal(x, data.normalize(images[y]))
            order.extend(y.tolist())
        assert sorted(order) == list(range(50))
        orders.append(order)
    assert orders[0] != orders[1]
    assert orders[0] != list(range(50))

    in_order = [y for _, y in data.Loader(images, np.arange(50), 8, shuffle=False)]
    np.testing.assert_array_equal(np.concatenate(in_order), np.arange(50))


def _epochs(loader, count):
    return [[(x.copy(), y.copy()) for x, y in loader] for _ in range(count)]


def _assert_same_epochs(ours, expected):
    assert len(ours) == len(expected)
    for our_epoch, expected_epoch in zip(ours, expected):
        assert len(our_epoch) == len(expected_epoch)
        for (x, y), (x_expected, y_expected) in zip(our_epoch, expected_epoch):
            np.testing.assert_array_equal(y, y_expected)
            np.testing.assert_array_equal(x, x_expected)


def test_same_seed_gives_the_same_batches(rng):
    images, labels = _random_images(rng, 40), np.arange(40)
    first = _epochs(data.Loader(images, labels, 16, augment=True, rng=11), 2)
    second = _epochs(data.Loader(images, labels, 16, augment=True, rng=11), 2)
    _assert_same_epochs(second, first)

    other = _epochs(data.Loader(images, labels, 16, augment=True, rng=12), 1)
    assert not np.array_equal(other[0][0][1], first[0][0][1])


def test_generator_state_saved_between_epochs_replays_the_next_epochs(rng):
    images, labels = _random_images(rng, 40), np.arange(40)
    generator = np.random.default_rng(5)
    loader = data.Loader(images, labels, 16, augment=True, rng=generator)
    assert loader.rng is generator, "a caller's Generator is used, not copied"

    _epochs(loader, 1)
    saved = generator.bit_generator.state
    expected = _epochs(loader, 2)

    resumed = np.random.default_rng(999)
    resumed.bit_generator.state = saved
    replayed = _epochs(data.Loader(images, labels, 16, augment=True, rng=resumed), 2)
    _assert_same_epochs(replayed, expected)


def _torchvision_crop_and_flip(image, top, left, flip):
    """The per-image reference: torchvision pads with zeros, crops, then mirrors."""
    tensor = tvf.pad(torch.from_numpy(image), [data.CROP_PADDING])
    tensor = tvf.crop(tensor, int(top), int(left), image.shape[1], image.shape[2])
    return (tvf.hflip(tensor) if flip else tensor).numpy()


def test_crop_and_flip_matches_torchvision_per_image(rng):
    count = 24
    images = _random_images(rng, count)
    span = 2 * data.CROP_PADDING
    top = np.concatenate([[0, span, 0, span], rng.integers(0, span + 1, count - 4)])
    left = np.concatenate([[0, 0, span, span], rng.integers(0, span + 1, count - 4)])
    flip = np.arange(count) % 2 == 1

    ours = data.crop_and_flip(images, top, left, flip)
    assert ours.dtype == np.uint8
    assert ours.flags.c_contiguous
    for i in range(count):
        expected = _torchvision_crop_and_flip(images[i], top[i], left[i], flip[i])
        np.testing.assert_array_equal(
            ours[i], expected, err_msg=f"image {i}, top {top[i]}, left {left[i]}, flip {flip[i]}"
        )


def test_flip_mirrors_exactly_and_centre_crop_is_the_image(rng):
    images = _random_images(rng, 6)
    centre = np.full(6, data.CROP_PADDING)
    flip = np.array([True, False, True, True, False, False])

    ours = data.crop_and_flip(images, centre, centre, flip)
    np.testing.assert_array_equal(ours[flip], images[flip][..., ::-1])
    np.testing.assert_array_equal(ours[~flip], images[~flip])


def test_augmented_batches_are_random_crops_and_flips_of_their_images(rng):
    count = 256
    images = _random_images(rng, count)
    span = 2 * data.CROP_PADDING + 1
    offsets = [(t, lf, f) for t in range(span) for lf in range(span) for f in (False, True)]
    top, left, flip = (np.array(column) for column in zip(*offsets))

    found = []
    for x, y in data.Loader(images, np.arange(count), 64, augment=True, rng=1):
        for image, index in zip(x, y):
            sources = np.repeat(images[index : index + 1], len(offsets), axis=0)
            candidates = data.normalize(data.crop_and_flip(sources, top, left, flip))
            matches = np.flatnonzero((candidates == image).all(axis=(1, 2, 3)))
            assert len(matches) == 1, f"image {index} is not one crop and flip of its source"
            found.append(offsets[matches[0]])

    tops, lefts, flips = (np.array(column) for column in zip(*found))
    assert set(tops) == set(range(span))
    assert set(lefts) == set(range(span))
    assert 0.4 < flips.mean() < 0.6


def test_normalize_matches_torchvision_to_tensor_and_normalize(rng):
    images = _random_images(rng, 8)
    reference = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD)]
    )
    expected = np.stack(
        [reference(Image.fromarray(image.transpose(1, 2, 0))).numpy() for image in images]
    )
    ours = data.normalize(images)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


# The real data


def test_real_cifar10_subset_decodes_and_normalises_like_torchvision(tmp_path, cifar10_root):
    root = cifar10_root
    assert data.find_dataset(root) == "imagefolder"

    split = data.load_split(root, train=False, limit=300, cache_dir=tmp_path)
    assert split.images.shape == (300, 3, 32, 32)
    assert split.classes == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(split.labels), [30] * 10)

    # Which files were picked, recomputed from the listing, to run torchvision on them.
    folder = ImageFolder(str(root / "test"))
    picked = data._balanced_pick(np.asarray(folder.targets), 300)
    reference = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD)]
    )
    for k in range(0, 300, 37):
        path, label = folder.samples[picked[k]]
        assert split.labels[k] == label
        with Image.open(path) as image:
            expected = reference(image.convert("RGB")).numpy()
        ours = data.normalize(split.images[k : k + 1])[0]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6, err_msg=path)
