"""The `tinyconv` command end to end on a tiny synthetic ImageFolder: training, resuming,
divergence, evaluation, prediction, and one-line errors for bad input."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinyconv
from tinyconv.checkpoint import load_checkpoint
from tinyconv.cli import main
from tinyconv.model import Sequential

CLASSES = ("circle", "square", "stripe")
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 4
# 24 training images in batches of 8: three steps an epoch.
SMALL_RUN = ["--batch-size", "8", "--epochs", "2", "--threads", "1"]


def write_image_folder(root, rng):
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
                pixels[:, :, label] += 150  # each class leans to one colour channel
                Image.fromarray(pixels).save(folder / f"{index:03d}.png")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagefolder")
    write_image_folder(root, np.random.default_rng(3))
    return root


def call_main(args, places):
    """main(args) with each key of places in args replaced by its value; returns the exit
    status. The thread count main may set is put back afterwards."""
    argv = list(args)
    for key, value in places.items():
        argv = [arg.replace(key, str(value)) for arg in argv]
    threads = tinyconv.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        tinyconv.set_num_threads(threads)
    return exit_info.value.code


@pytest.fixture
def run(dataset, tmp_path, capsys):
    """Runs main(args) and returns (exit status, stdout, stderr); "{data}", "{cache}" and
    "{tmp}" in args stand for the dataset, a cache directory and tmp_path."""
    def run_main(*args):
        places = {"{data}": dataset, "{cache}": tmp_path / "cache", "{tmp}": tmp_path}
        code = call_main(args, places)
        out, err = capsys.readouterr()
        return code, out, err

    return run_main


def train_args(out, *extra):
    return ["train", "--data", "{data}", "--cache-dir", "{cache}", "--out", out, *SMALL_RUN,
            *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
    """The output directory of a finished two-epoch run."""
    out = tmp_path_factory.mktemp("run")
    places = {"{data}": dataset, "{cache}": out / "cache"}
    assert call_main(train_args(str(out)), places) == 0
    return out


def test_info_prints_version_simd_path_and_threads(run):
    code, out, _ = run("info")

    assert code == 0
    assert f"tinyconv {tinyconv.__version__}" in out
    assert f"SIMD path: {tinyconv.isa()}" in out and "OpenMP threads:" in out


def test_train_writes_checkpoint_metrics_and_plots(trained):
    with (trained / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))

    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(0 <= float(row["test_accuracy"]) <= 1 for row in rows)
    for name in ("curves.png", "confusion.png", "predictions.png"):
        assert (trained / name).read_bytes().startswith(b"\x89PNG"), name
    saved = load_checkpoint(trained / "last.npz")
    assert saved.epoch == 2 and saved.classes == list(CLASSES)
    assert saved.recipe["batch_size"] == 8 and saved.optimizer["steps"] == 6


def test_train_prints_one_line_per_epoch(run, tmp_path):
    code, out, _ = run(*train_args("{tmp}/out", "--epochs", "1"))

    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert code == 0 and len(lines) == 1
    for part in ("loss", "train acc", "test acc", " s ", "images/s"):
        assert part in lines[0], part


def test_resume_after_a_crash_reaches_the_same_weights(run, trained, tmp_path, monkeypatch):
    steps_per_epoch = 3
    calls = []
    real = Sequential.loss_and_grad

    def crash_in_second_epoch(self, x, labels):
        calls.append(1)
        if len(calls) == steps_per_epoch + 2:
            raise KeyboardInterrupt
        return real(self, x, labels)

    monkeypatch.setattr(Sequential, "loss_and_grad", crash_in_second_epoch)
    code, _, err = run(*train_args("{tmp}/out"))
    assert code == 130 and "interrupted" in err
    assert load_checkpoint(tmp_path / "out" / "last.npz").epoch == 1

    monkeypatch.setattr(Sequential, "loss_and_grad", real)
    code, out, _ = run(*train_args("{tmp}/out", "--resume", "{tmp}/out/last.npz"))
    assert code == 0 and "resuming after epoch 1" in out

    resumed = load_checkpoint(tmp_path / "out" / "last.npz").params
    uninterrupted = load_checkpoint(trained / "last.npz").params
    for name, value in uninterrupted.items():
        assert np.array_equal(resumed[name], value), name
    with (tmp_path / "out" / "metrics.csv").open() as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]


def test_resume_with_other_settings_is_refused(run, trained, tmp_path):
    code, _, err = run(*train_args("{tmp}/out", "--lr", "0.05", "--resume",
                                   str(trained / "last.npz")))

    assert code == 2
    assert "cannot resume" in err and "lr=0.02 (now 0.05)" in err


def test_a_nan_loss_stops_training_and_keeps_the_last_checkpoint(run, tmp_path, monkeypatch):
    calls = []
    real = Sequential.loss_and_grad

    def nan_at_step_two_of_epoch_two(self, x, labels):
        calls.append(1)
        loss, logits = real(self, x, labels)
        return (float("nan") if len(calls) == 5 else loss), logits

    monkeypatch.setattr(Sequential, "loss_and_grad", nan_at_step_two_of_epoch_two)
    code, _, err = run(*train_args("{tmp}/out"))

    assert code == 3
    assert "diverged" in err and "epoch 2, step 2" in err and "lr " in err
    assert len(err.strip().splitlines()) == 1
    assert load_checkpoint(tmp_path / "out" / "last.npz").epoch == 1


def test_a_huge_learning_rate_diverges_with_a_non_zero_exit(run):
    code, _, err = run(*train_args("{tmp}/out", "--lr", "1e12", "--schedule", "constant"))

    assert code == 3 and "diverged" in err


def test_evaluate_prints_accuracy_per_class_and_confusion_matrix(run, trained):
    code, out, _ = run("evaluate", "--checkpoint", str(trained / "last.npz"), "--data",
                       "{data}", "--cache-dir", "{cache}")

    assert code == 0
    assert out.startswith("accuracy: ") and "(" in out and f"/{3 * TEST_PER_CLASS})" in out
    assert "per class:" in out and "confusion matrix" in out
    matrix_rows = out.splitlines()[-len(CLASSES):]
    counts = [[int(n) for n in row.split()[1:]] for row in matrix_rows]
    assert [sum(row) for row in counts] == [TEST_PER_CLASS] * len(CLASSES)


def test_predict_prints_the_top_three_classes_of_each_image(run, trained, tmp_path):
    paths = []
    for index, size in enumerate([(32, 32), (45, 27)]):
        path = tmp_path / f"image{index}.png"
        Image.new("RGB", size, (200, 30, 30)).save(path)
        paths.append(str(path))

    code, out, _ = run("predict", "--checkpoint", str(trained / "last.npz"), *paths)

    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for path, line in zip(paths, lines):
        guesses = line.removeprefix(f"{path}: ").split(", ")
        assert len(guesses) == 3 and all(g.split()[0] in CLASSES for g in guesses)
        # Three classes in all, so the three guesses share the whole probability.
        assert abs(sum(float(g.split()[1].rstrip("%")) for g in guesses) - 100) <= 0.15


def truncated_checkpoint(trained, tmp_path):
    data = (trained / "last.npz").read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    return str(path)


BAD_INPUTS = {
    "missing data dir": (["train", "--data", "{tmp}/absent"], "does not exist"),
    "empty data dir": (["train", "--data", "{tmp}"], "holds no dataset"),
    "batch size 0": (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    "threads 0": (["train", "--threads", "0"], "--threads: must be an integer >= 1"),
    "lr nan": (["train", "--lr", "nan"], "--lr: must be a number > 0, got 'nan'"),
    "warm-up above 1": (["train", "--warmup", "1.5"], "--warmup: must be a number in [0, 1]"),
    "unknown schedule": (["train", "--schedule", "step"], "invalid choice: 'step'"),
    "no command": ([], "required: COMMAND"),
    "missing checkpoint": (["evaluate", "--checkpoint", "{tmp}/absent.npz", "--data",
                            "{data}"], "absent.npz"),
    "truncated checkpoint": (["evaluate", "--checkpoint", "TRUNCATED", "--data", "{data}"],
                             "corrupt or truncated"),
    "truncated resume": (["train", "--data", "{data}", "--resume", "TRUNCATED"],
                         "corrupt or truncated"),
    "missing image": (["predict", "--checkpoint", "CHECKPOINT", "{tmp}/absent.png"],
                      "absent.png"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_on_stderr(run, trained, tmp_path, case):
    args, expected = BAD_INPUTS[case]
    if "TRUNCATED" in args:
        args = [truncated_checkpoint(trained, tmp_path) if arg == "TRUNCATED" else arg
                for arg in args]
    args = [str(trained / "last.npz") if arg == "CHECKPOINT" else arg for arg in args]

    code, _, err = run(*args)

    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


@pytest.mark.parametrize(("arguments", "environment"), [
    (["train", "--data", "absent"], {}),
    (["info"], {"TINYCONV_ISA": "sse9"}),
], ids=["missing_data", "bad_simd_path"])
def test_the_command_reports_bad_input_without_a_traceback(tmp_path, arguments, environment):
    env = {**os.environ, "PYTHONPATH": str(Path(tinyconv.__file__).parents[1]), **environment}
    command = [sys.executable, "-c", "from tinyconv.cli import main; main()", *arguments]

    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                            cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
