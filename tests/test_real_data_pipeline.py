"""The real-data scripts end to end: ISBI U-Net (elastic deformation, border weights, mirrored
sliding window), its held-out report and results figure, and the CamVid comparison scripts
with class weights. On ../shared/data when present, else on fake trees of the same layout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from tools.fake_data import make
from tools.results_figure import TITLE_HEIGHT
from utils.cell_segments import THRESHOLDS
from utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path) -> str:
    env = dict(os.environ, SEG_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def isbi_root(tmp_path_factory) -> Path:
    shared = SHARED_DATA / "isbi2012"
    if (shared / "image").is_dir():
        return shared
    return make("isbi", tmp_path_factory.mktemp("isbi"), size=96)


def test_isbi_script_two_iterations_then_report_and_figure(isbi_root, tmp_path):
    run_dir = tmp_path / "isbi"
    out = run([ROOT / "train/isbi-u-net/train.py", "--data-root", isbi_root, "--run-dir", run_dir,
               "--iters", "2", "--val-every", "2", "--batch-size", "2", "--crop-size", "64",
               "--model-kwargs", '{"width": 4}', "--val-tile", "256", "--val-stride", "224",
               "--val-mirror-margin", "16", "--workers", "0", "--device", "cpu", "--no-progress"], tmp_path)
    assert "best mean_iu" in out.strip().splitlines()[-1]
    state = load_checkpoint(run_dir / "best.pth")
    cfg = state["config"]
    assert (cfg["pixel_weights"], cfg["elastic_std"], cfg["val_mirror_margin"]) == ("unet-border", 10.0, 16)
    report_file = tmp_path / "isbi.json"
    out = run([ROOT / "tools/isbi_report.py", run_dir / "best.pth", "--device", "cpu",
               "--json", report_file], tmp_path)
    report = json.loads(report_file.read_text())
    assert report["slices"] == ["25", "26", "27", "28", "29"]
    for key in ("pixel_error", "rand_error", "mean_iu"):
        assert 0 <= report[key] <= 1 and key.replace("_", " ").split()[0] in out.lower()
    # the report's mean_iu is the engine's validation figure (same inference settings)
    assert report["mean_iu"] == pytest.approx(state["metrics"]["mean_iu"], abs=1e-6)
    # thresholds chosen on the training slices (lowest error there), then applied held out
    tuned = report["thresholded"]
    assert tuned["chosen_on"] == "train"
    for kind in ("pixel", "rand"):
        errors = {float(t): e for t, e in tuned[f"tune_{kind}_errors"].items()}
        threshold = tuned["seed_threshold" if kind == "rand" else "pixel_threshold"]
        assert set(errors) == set(THRESHOLDS) and errors[threshold] == min(errors.values())
        assert 0 <= tuned[f"{kind}_error"] <= 1
    assert set(tuned["rand_error_per_slice"]) == set(report["slices"])
    # at 0.5 the thresholded map is the argmax of two classes (up to ties): the same pixel error
    out = run([ROOT / "tools/isbi_report.py", run_dir / "best.pth", "--device", "cpu", "--seed-threshold", "0.7",
               "--pixel-threshold", "0.5", "--json", report_file], tmp_path)
    given = json.loads(report_file.read_text())
    assert given["thresholded"]["pixel_error"] == pytest.approx(given["pixel_error"], abs=1e-4)
    assert (given["thresholded"]["seed_threshold"], given["thresholded"]["chosen_on"]) == (0.7, None)
    assert "threshold 0.7 given" in out
    figure = tmp_path / "figure.png"
    run([ROOT / "tools/results_figure.py", run_dir / "best.pth", "--out", figure, "--num", "2",
         "--device", "cpu"], tmp_path)
    side = report_size(isbi_root)
    with Image.open(figure) as img:
        assert img.size == (3 * side + 8, TITLE_HEIGHT + 2 * side + 4) and img.mode == "RGB"
    # two checkpoints: one more column; the same checkpoint twice draws the same prediction twice
    run([ROOT / "tools/results_figure.py", run_dir / "best.pth", run_dir / "best.pth", "--out", figure,
         "--indices", "0", "--device", "cpu"], tmp_path)
    with Image.open(figure) as img:
        picture = np.asarray(img)
    assert picture.shape == (TITLE_HEIGHT + side, 4 * side + 12, 3)
    panels = [picture[TITLE_HEIGHT:, c * (side + 4):c * (side + 4) + side] for c in range(4)]
    assert np.array_equal(panels[2], panels[3])
    with Image.open(isbi_root / "label" / "25.png") as label:  # membrane 0 -> black, cell 1 -> white
        truth = np.asarray(label) > 127
    assert np.array_equal(panels[1].min(axis=2) > 127, truth)


def report_size(root: Path) -> int:
    with Image.open(root / "image" / "25.png") as img:
        return img.size[0]


@pytest.mark.parametrize("pair,extra", [("camvid-u-net", ["--model-kwargs", '{"width": 4}']),
                                        ("camvid-fcn8s-vgg", ["--no-pretrained", "--model-kwargs", '{"fc_channels": 16}'])])
def test_camvid_scripts_with_median_frequency_weights(pair, extra, tmp_path):
    # camvid-seg-net (median-freq by default too) runs in tests/test_scripts.py
    root = make("camvid", tmp_path / "data", size=(24, 32), n=2)
    out = run([ROOT / "train" / pair / "train.py", "--data-root", root, "--run-dir", tmp_path / pair,
               "--iters", "2", "--val-every", "2", "--batch-size", "2", "--crop-size", "32",
               "--workers", "0", "--device", "cpu", "--no-progress", *extra], tmp_path)
    assert "class weights (median-freq): Sky" in out  # printed at start
    assert list((tmp_path / "runs" / "class_weights").glob("camvid-train-*.json"))  # cached
    assert load_checkpoint(tmp_path / pair / "best.pth")["config"]["class_weights"] == "median-freq"


def test_bad_flags_fail_before_work():
    import runpy
    from utils.cli import parse_config
    cfg = runpy.run_path(str(ROOT / "train/isbi-u-net/train.py"), run_name="script_under_test")["cfg"]
    for flags in (["--class-weights", "median"], ["--pixel-weights", "border"], ["--border-sigma", "0"],
                  ["--val-mirror-margin", "-1"], ["--elastic-grid", "1"]):
        with pytest.raises(SystemExit) as stop:
            parse_config(cfg, flags)
        assert stop.value.code == 2, flags
    assert parse_config(cfg, ["--class-weights", "inverse-log"]).class_weights == "inverse-log"
