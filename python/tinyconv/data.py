"""CIFAR-10 for training: find the data, decode it once into a cache, serve augmented batches.

Two layouts are read (see `find_dataset`): torchvision's pickled CIFAR10 directory and an
ImageFolder pair of `train/` and `test/` directories with one sub-folder of images per class.
`load_split` returns a split as uint8 images in NCHW order, shape (N, 3, 32, 32), the layout
the network consumes, so batches need no transpose. Decoded ImageFolder splits are cached as
`.npy` files under the user's cache directory, never beside the data, which may be read-only.

`Loader` turns a split into float32 batches normalised with CIFAR10_MEAN and CIFAR10_STD,
optionally augmented the way torchvision's RandomCrop(32, padding=4) followed by
RandomHorizontalFlip() would, but on whole batches at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Per-channel mean and standard deviation (R, G, B) of the pixels of the 50,000 CIFAR-10
# training images, with pixel values scaled to [0, 1]; the values torchvision users pass to
# transforms.Normalize for CIFAR-10.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

IMAGE_SIZE = 32
CROP_PADDING = 4

DatasetKind = Literal["cifar10", "imagefolder"]

_CIFAR10_DIR = "cifar-10-batches-py"
_SPLIT_DIRS = ("train", "test")

# Bump when the cached arrays or the subset pick change, so that old cache files stop matching.
_CACHE_FORMAT = "tinyconv-images-nchw-uint8-v1"
_SUBSET_SEED = 20240611

# Decoding a 32x32 JPEG costs ~40 us in libjpeg but ~250 us in PIL's Python marker parsing, so
# large splits are spread over processes (threads would serialise on the GIL); below one task's
# worth of files the pool's start-up is not worth it.
_FILES_PER_TASK = 1000

_MEAN_CHW = np.array(CIFAR10_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD_CHW = np.array(CIFAR10_STD, dtype=np.float32).reshape(3, 1, 1)


class DatasetLayoutError(ValueError):
    """A directory does not hold a dataset in a layout tinyconv reads."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset, decoded.

    images: uint8 (N, 3, 32, 32), NCHW, RGB.
    labels: int64 (N,), indices into classes.
    classes: class names in label order.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/tinyconv, or ~/.cache/tinyconv when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "tinyconv"


def find_dataset(root: str | os.PathLike, *, download: bool = False) -> DatasetKind:
    """Which dataset layout root holds: "cifar10" or "imagefolder".

    "cifar10": root/cifar-10-batches-py/ with torchvision's pickled batches (preferred when
    both layouts are present, as it needs no decoding).
    "imagefolder": root/train/ and root/test/, each with the same class sub-folders, every one
    holding at least one image file.
    With download=True a root holding neither gets CIFAR-10 downloaded by torchvision.

    Raises FileNotFoundError when root does not exist and DatasetLayoutError when it holds
    something else.
    """
    root = Path(root)
    if download and not _holds_cifar10(root) and not _holds_image_folders(root):
        from torchvision.datasets import CIFAR10

        CIFAR10(root, train=True, download=True)

    if not root.exists():
        msg = (
            f"dataset directory {root} does not exist; expected a directory holding "
            f"{_CIFAR10_DIR}/ or train/ and test/ class folders"
        )
        raise FileNotFoundError(msg)

    if _holds_cifar10(root):
        _check_cifar10_files(root)
        return "cifar10"

    if _holds_image_folders(root):
        _check_image_folders(root)
        return "imagefolder"

    msg = (
        f"{root} holds no dataset tinyconv reads: expected {_CIFAR10_DIR}/ (torchvision's "
        "CIFAR10 download) or train/ and test/ directories with one sub-folder of images per "
        "class (torchvision's ImageFolder layout)"
    )
    raise DatasetLayoutError(msg)


def load_split(
    root: str | os.PathLike,
    train: bool = True,
    *,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Split:
    """The train or test split of the dataset under root (see find_dataset), decoded.

    limit: keep only this many images, a fixed pick that is balanced over the classes (the
    k-th image of every class comes before the (k+1)-th of any), so every class is present
    when limit >= the number of classes. Images stay in the split's order. ImageFolder data
    then decodes only the picked files.
    cache_dir: where decoded ImageFolder splits are cached (default: default_cache_dir()).
    The cache file's name hashes the split's resolved path, its file list, the pick, and the
    size and modification time of each decoded file, so changed data is decoded afresh.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        msg = f"limit must be a positive int or None, got {limit!r}"
        raise ValueError(msg)

    if find_dataset(root, download=download) == "cifar10":
        return _load_cifar10(Path(root), train, limit)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _load_image_folder(Path(root) / _SPLIT_DIRS[0 if train else 1], limit, cache)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (B, 3, H, W) -> float32 (B, 3, H, W): pixel / 255, minus CIFAR10_MEAN, divided by
    CIFAR10_STD per channel; the same float32 operations as torchvision's ToTensor followed
    by Normalize, so the results agree bit for bit."""
    x = np.true_divide(images, np.float32(255), dtype=np.float32)
    x -= _MEAN_CHW
    x /= _STD_CHW
    return x


def crop_and_flip(
    images: np.ndarray, top: np.ndarray, left: np.ndarray, flip: np.ndarray
) -> np.ndarray:
    """uint8 (B, C, H, W) -> uint8 (B, C, H, W), C-contiguous.

    Image i is zero-padded by CROP_PADDING pixels on each side, cropped back to H x W with its
    top-left corner at (top[i], left[i]) of the padded image (each in [0, 2 * CROP_PADDING]),
    then mirrored left to right where flip[i] is true.
    """
    count, channels, height, width = images.shape
    padded = np.zeros(
        (count, channels, height + 2 * CROP_PADDING, width + 2 * CROP_PADDING), dtype=np.uint8
    )
    padded[:, :, CROP_PADDING:-CROP_PADDING, CROP_PADDING:-CROP_PADDING] = images

    # Fancy indexing over a view of every window copies each chosen crop as one block.
    windows = sliding_window_view(padded, (height, width), axis=(2, 3))
    cropped = windows[np.arange(count), :, top, left]

    mirrored = np.flatnonzero(flip)
    cropped[mirrored] = cropped[mirrored, :, :, ::-1]
    return cropped


class Loader:
    """Batches of a decoded split, one epoch per iteration.

    Yields (x, y): x float32 (B, 3, H, W) C-contiguous, normalised (see normalize); y int64
    (B,). The last batch is smaller when batch_size does not divide N, unless drop_last.

    shuffle: visit the images in a new random order each epoch.
    augment: random crop of the zero-padded image and random horizontal flip (p = 0.5) per
    image, as in crop_and_flip; off for evaluation.
    rng: a numpy Generator, or a seed for a new one. All of an epoch's random draws are made
    when its first batch is requested, so a Generator state saved between epochs (see
    tinyconv.checkpoint) replays the following epochs exactly.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        drop_last: bool = False,
        rng: np.random.Generator | int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be an int >= 1, got {batch_size!r}"
            raise ValueError(msg)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            msg = f"images must be uint8 (N, 3, H, W), got {images.dtype} {images.shape}"
            raise ValueError(msg)
        if labels.shape != (len(images),):
            msg = f"labels must have shape ({len(images)},), got {labels.shape}"
            raise ValueError(msg)

        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.rng = np.random.default_rng(rng)

    def __len__(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        count = len(self.labels)
        order = self.rng.permutation(count) if self.shuffle else np.arange(count)
        if self.augment:
            top, left = self.rng.integers(0, 2 * CROP_PADDING + 1, size=(2, count))
            flip = self.rng.random(count) < 0.5

        for batch in range(len(self)):
            at = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            chosen = order[at]
            raw = self.images.take(chosen, axis=0)
            if self.augment:
                raw = crop_and_flip(raw, top[at], left[at], flip[at])
            yield normalize(raw), self.labels.take(chosen)


def _holds_cifar10(root: Path) -> bool:
    return (root / _CIFAR10_DIR).is_dir()


def _holds_image_folders(root: Path) -> bool:
    return all((root / split).is_dir() for split in _SPLIT_DIRS)


def _check_cifar10_files(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    names.append(CIFAR10.meta["filename"])
    missing = [name for name in names if not (root / _CIFAR10_DIR / name).is_file()]
    if missing:
        msg = f"{root / _CIFAR10_DIR} lacks {', '.join(missing)} of torchvision's CIFAR10 files"
        raise DatasetLayoutError(msg)


def _check_image_folders(root: Path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = {split: _class_folders(root / split) for split in _SPLIT_DIRS}
    if classes["train"] != classes["test"]:
        msg = (
            f"{root}: train/ and test/ must have the same class folders, got "
            f"{classes['train']} and {classes['test']}"
        )
        raise DatasetLayoutError(msg)

    for split in _SPLIT_DIRS:
        for name in classes[split]:
            folder = root / split / name
            with os.scandir(folder) as entries:
                if not any(entry.name.lower().endswith(IMG_EXTENSIONS) for entry in entries):
                    msg = f"class folder {folder} holds no image file ({', '.join(IMG_EXTENSIONS)})"
                    raise DatasetLayoutError(msg)


def _class_folders(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    if not names:
        msg = f"{split_dir} has no class folders; expected one sub-folder of images per class"
        raise DatasetLayoutError(msg)
    return names


def _load_cifar10(root: Path, train: bool, limit: int | None) -> Split:
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(root, train=train, download=False)
    labels = np.asarray(dataset.targets, dtype=np.int64)
    chosen = _balanced_pick(labels, limit)
    images = np.ascontiguousarray(dataset.data[chosen].transpose(0, 3, 1, 2))
    return Split(images, labels[chosen], tuple(dataset.classes))


def _load_image_folder(split_dir: Path, limit: int | None, cache_dir: Path) -> Split:
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(split_dir))
    labels = np.asarray(folder.targets, dtype=np.int64)
    chosen = _balanced_pick(labels, limit)

    key = _cache_key(folder, chosen)
    cache_file = cache_dir / f"{split_dir.name}-{len(chosen)}-{key}.npy"
    if cache_file.is_file():
        images = np.load(cache_file, allow_pickle=False)
    else:
        images = _decode_images([folder.samples[i][0] for i in chosen])
        _save_atomically(cache_file, images)
    return Split(images, labels[chosen], tuple(folder.classes))


def _balanced_pick(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Sorted indices of `limit` labels spread evenly over the classes; all when limit is
    None or not below the count. The pick is fixed: a seeded shuffle, then round-robin over
    the classes in label order."""
    count = len(labels)
    if limit is None or limit >= count:
        return np.arange(count)

    order = np.random.default_rng(_SUBSET_SEED).permutation(count)
    shuffled = labels[order]
    by_class = np.argsort(shuffled, kind="stable")
    sorted_labels = shuffled[by_class]
    rank_in_class = np.empty(count, dtype=np.int64)
    rank_in_class[by_class] = np.arange(count) - np.searchsorted(sorted_labels, sorted_labels)

    # lexsort sorts by its last key first: rank within the class, then the class.
    round_robin = np.lexsort((shuffled, rank_in_class))
    return np.sort(order[round_robin[:limit]])


def _cache_key(folder, chosen: np.ndarray) -> str:
    """A hash of what decoding the chosen samples of an ImageFolder depends on."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\n{Path(folder.root).resolve()}\n".encode())

    # The directory goes in by its resolved path and the files by their names under it, so
    # that spelling root differently (relative, absolute, through a link) finds the same cache.
    skip = len(folder.root)
    # The whole listing decides the pick; only the picked files decide the pixels.
    for path, label in folder.samples:
        digest.update(f"{path[skip:]}\t{label}\n".encode())
    digest.update(b"picked\n")
    for i in chosen:
        path = folder.samples[i][0]
        stat = os.stat(path)
        digest.update(f"{path[skip:]}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _decode_images(paths: Sequence[str]) -> np.ndarray:
    """uint8 (len(paths), 3, 32, 32) decoded from the image files, in order."""
    tasks = [paths[at : at + _FILES_PER_TASK] for at in range(0, len(paths), _FILES_PER_TASK)]
    workers = min(len(tasks), _usable_cpus())
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_decode_files_nchw, tasks))
    else:
        parts = [_decode_files_nchw(task) for task in tasks]
    if not parts:
        return np.empty((0, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return np.concatenate(parts)


def _decode_files_nchw(paths: Sequence[str]) -> np.ndarray:
    from PIL import Image

    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        if pixels.shape != images.shape[1:]:
            size = f"{pixels.shape[1]}x{pixels.shape[0]}"
            msg = f"{path} is {size}, expected {IMAGE_SIZE}x{IMAGE_SIZE} pixels"
            raise DatasetLayoutError(msg)
        images[i] = pixels
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Write array to path through a temporary file in the same directory and a rename, so
    readers never see a partial file. A cache that cannot be written only costs a decode next
    time, so that is a warning, not an error."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb") as file:
            np.save(file, array)
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        warnings.warn(f"decoded images not cached in {path}: {error}", stacklevel=4)
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
