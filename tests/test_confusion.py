"""eval.py --confusion: the raw counts in --json are the metrics' own confusion matrix, and the
picture is that matrix normalised per row, with the class names."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import eval as eval_script
from runs import tiny_config
from models.input_norm import InputNorm
from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.confusion_figure import HIGH, confusion_image, row_normalised
from utils.engine import Trainer
from utils.metrics import ConfusionMatrix
from utils.transforms import eval_transforms


def test_eval_writes_the_metrics_own_confusion_counts_and_the_picture(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    Trainer(cfg).fit()
    checkpoint = tmp_path / "run" / "best.pth"
    metrics = eval_script.main([str(checkpoint), "--device", "cpu", "--workers", "0", "--no-progress",
                                "--json", str(tmp_path / "eval.json"), "--confusion", str(tmp_path / "confusion.png")])
    record = json.loads((tmp_path / "eval.json").read_text())
    counts = np.array(record["confusion"])

    # The reference: the model run image by image into a ConfusionMatrix of utils/metrics.py.
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state).eval()
    val = datasets.build_dataset("shapes", "val", None, eval_transforms(None, InputNorm.from_dict(state["input_norm"])), **cfg.dataset_kwargs)
    reference = ConfusionMatrix(state["num_classes"])
    with torch.no_grad():
        for image, mask in val:
            reference.update(model(image[None])["out"].argmax(1)[0], mask)
    np.testing.assert_array_equal(counts, reference.matrix.numpy())
    assert counts.sum() == sum(int((mask != 255).sum()) for _, mask in val)  # every labelled pixel, once
    assert record["acc"] == pytest.approx(np.trace(counts) / counts.sum())
    assert record["classes"] == state["classes"] and metrics["confusion"] == record["confusion"]

    picture = Image.open(tmp_path / "confusion.png")
    assert picture.mode == "RGB" and min(picture.size) > 200


def test_rows_are_normalised_and_an_empty_row_stays_empty():
    counts = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    shares = row_normalised(counts)
    np.testing.assert_allclose(shares[[0, 2]].sum(axis=1), 1.0)
    np.testing.assert_allclose(shares[0], [0.8, 0.2, 0.0])
    assert np.isnan(shares[1]).all()


def test_a_perfect_matrix_is_dark_on_the_diagonal_and_white_elsewhere():
    classes = ["background", "circle", "square"]
    picture = np.asarray(confusion_image(np.diag([50, 30, 20]), classes))
    dark = np.all(picture == HIGH.astype(np.uint8), axis=-1)
    rows, cols = np.nonzero(dark)
    # The grid is the dark pixels' bounding box, in 3 x 3 cells: dark on the diagonal, nowhere else.
    grid = dark[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    step_r, step_c = grid.shape[0] / 3, grid.shape[1] / 3
    for i in range(3):
        for j in range(3):
            cell = grid[round(i * step_r):round((i + 1) * step_r), round(j * step_c):round((j + 1) * step_c)]
            assert (cell.mean() > 0.7) if i == j else not cell.any(), (i, j, cell.mean())
    with pytest.raises(ValueError, match="needs 2 class names, got 3"):
        confusion_image(np.eye(2), classes)


def test_a_confusion_file_that_is_not_png_fails_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        eval_script.parse_args(["missing.pth", "--confusion", str(tmp_path / "matrix.jpg")])
    assert "ending in .png" in capsys.readouterr().err
