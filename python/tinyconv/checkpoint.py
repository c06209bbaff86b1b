"""Training checkpoints: one `.npz` file of plain arrays, readable with allow_pickle=False.

Keys:
    format_version          int64, CHECKPOINT_VERSION
    architecture            str, the model's config JSON (Sequential.config())
    epoch                   int64, epochs completed
    classes                 str (k,), class names in label order
    recipe                  str, JSON of the training settings
    param/<name>            each model parameter, named as in Sequential.parameters()
    optimizer/<key>         SGD.state_dict(): "steps" (the schedule's step) and momentum buffers
    rng/<key>               the batch Generator's bit generator state (see generator_state)

Files are written to a temporary file in the same directory, flushed to disk and renamed over
the old one, so a crash leaves either the old checkpoint or the new one, whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import Sequential, first_difference

CHECKPOINT_VERSION = 1

_UINT64_MASK = (1 << 64) - 1
_BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM}


def _uint128_to_array(value):
    return np.array([value >> 64, value & _UINT64_MASK], np.uint64)


def _array_to_uint128(array):
    high, low = (int(word) for word in array)
    return (high << 64) | low


def generator_state(rng):
    """The state of a PCG64 or PCG64DXSM Generator as arrays (128-bit words as uint64 pairs)."""
    state = rng.bit_generator.state
    if state["bit_generator"] not in _BIT_GENERATORS:
        msg = f"cannot save a {state['bit_generator']} generator, only PCG64 or PCG64DXSM"
        raise ValueError(msg)
    return {
        "bit_generator": np.array(state["bit_generator"]),
        "state": _uint128_to_array(state["state"]["state"]),
        "inc": _uint128_to_array(state["state"]["inc"]),
        "has_uint32": np.array(state["has_uint32"], np.int64),
        "uinteger": np.array(state["uinteger"], np.uint64),
    }


def set_generator_state(rng, arrays):
    """Put back into rng a state taken by generator_state."""
    if "bit_generator" not in arrays:
        msg = "the checkpoint holds no generator state"
        raise ValueError(msg)
    name = str(arrays["bit_generator"])
    if name != rng.bit_generator.state["bit_generator"]:
        msg = (f"the checkpoint holds a {name} state, the generator is "
               f"{type(rng.bit_generator).__name__}")
        raise ValueError(msg)
    rng.bit_generator.state = {
        "bit_generator": name,
        "state": {"state": _array_to_uint128(arrays["state"]),
                  "inc": _array_to_uint128(arrays["inc"])},
        "has_uint32": int(arrays["has_uint32"]),
        "uinteger": int(arrays["uinteger"]),
    }


@dataclass
class Checkpoint:
    """What a checkpoint file holds, as read by load_checkpoint."""

    architecture: str
    params: dict
    optimizer: dict = field(default_factory=dict)
    epoch: int = 0
    rng: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    recipe: dict = field(default_factory=dict)

    def check_architecture(self, model):
        """ValueError unless the model has the architecture the checkpoint was saved from."""
        saved = Sequential.from_config(self.architecture).architecture()
        difference = first_difference(model.architecture(), saved)
        if difference is not None:
            msg = f"the checkpoint is of another architecture: {difference}"
            raise ValueError(msg)

    def build_model(self):
        """The saved model, rebuilt from its architecture and weights."""
        model = Sequential.from_config(self.architecture)
        model.load_state_dict(self.params)
        return model

    def restore(self, model, optimizer=None, rng=None):
        """Load the weights into model and, when given, the state of optimizer and rng."""
        self.check_architecture(model)
        model.load_state_dict(self.params)
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
        if rng is not None:
            set_generator_state(rng, self.rng)


def save_checkpoint(path, model, optimizer, *, epoch, rng=None, classes=(), recipe=None):
    """Write a checkpoint to path atomically (see the module's docstring)."""
    arrays = {
        "format_version": np.array(CHECKPOINT_VERSION, np.int64),
        "architecture": np.array(model.config()),
        "epoch": np.array(epoch, np.int64),
        "classes": np.array(list(classes), dtype=str),
        "recipe": np.array(json.dumps(recipe or {}, sort_keys=True)),
    }
    arrays.update({f"param/{name}": param for name, param, _ in model.parameters()})
    arrays.update({f"optimizer/{key}": value
                   for key, value in optimizer.state_dict().items()})
    if rng is not None:
        arrays.update({f"rng/{key}": value for key, value in generator_state(rng).items()})

    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory):
    # The rename itself lives in the directory; without this a power cut can undo it.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_arrays(path):
    try:
        # Opened here rather than by np.load, which leaks its handle on a broken archive.
        with open(path, "rb") as file:
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                msg = "it holds a single array, not an .npz archive"
                raise ValueError(msg)
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        msg = f"{path}: not a readable checkpoint, corrupt or truncated ({error})"
        raise ValueError(msg) from error


def _with_prefix(arrays, prefix):
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint. Raises FileNotFoundError when there is no
    file and ValueError when it is corrupt, truncated, or of another format version."""
    arrays = _read_arrays(path)
    if "format_version" not in arrays:
        msg = f"{path}: not a tinyconv checkpoint (no format_version)"
        raise ValueError(msg)
    version = int(arrays["format_version"])
    if version != CHECKPOINT_VERSION:
        msg = (f"{path}: checkpoint format version {version}, this tinyconv reads version "
               f"{CHECKPOINT_VERSION}")
        raise ValueError(msg)

    try:
        return Checkpoint(
            architecture=str(arrays["architecture"]),
            params=_with_prefix(arrays, "param/"),
            optimizer=_with_prefix(arrays, "optimizer/"),
            epoch=int(arrays["epoch"]),
            rng=_with_prefix(arrays, "rng/"),
            classes=[str(name) for name in arrays["classes"]],
            recipe=json.loads(str(arrays["recipe"])),
        )
    except (KeyError, ValueError) as error:
        msg = f"{path}: incomplete checkpoint ({error!r})"
        raise ValueError(msg) from error
