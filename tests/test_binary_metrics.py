"""Two-class figures (utils/binary_metrics.py) against direct computations, through evaluate(),
the engine's validation, eval.py --json; predict.py --probs."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from torch import nn

import eval as eval_script
import predict as predict_script
from tools.fake_data import make
from utils.binary_metrics import BINARY_KEYS, BINS, LOG_ODDS_LIMIT, ScoreHistogram, binary_metrics, class_one_log_odds
from utils.engine import TrainConfig, Trainer
from utils.inference import InferenceConfig, evaluate
from utils.metrics import ConfusionMatrix


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The Mann-Whitney statistic: P(score of a class-1 pixel > score of a class-0 pixel), ties 1/2."""
    ranks = rankdata(scores)
    pos = int(labels.sum())
    neg = labels.size - pos
    return (ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)


def step_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n over the distinct scores in descending order."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def two_class_sample(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = np.where(labels == 1, rng.normal(1.0, 1.5, n), rng.normal(-1.0, 1.5, n))
    return scores, labels


def bin_centres(values: np.ndarray) -> np.ndarray:
    """Put scores on bin centres, so that the histogram's ties are exactly the scores' ties."""
    width = 2 * LOG_ODDS_LIMIT / BINS
    return (np.floor(values / width) + 0.5) * width


def test_areas_equal_the_rank_statistic_and_step_precision_when_scores_fall_on_bin_centres():
    scores, labels = two_class_sample()
    scores = bin_centres(np.round(scores, 1))  # many exact ties too
    hist = ScoreHistogram()
    hist.update(torch.from_numpy(scores), torch.from_numpy(labels))
    areas = hist.compute()
    assert areas["roc_auc"] == pytest.approx(rank_auc(scores, labels), abs=1e-12)
    assert areas["average_precision"] == pytest.approx(step_average_precision(scores, labels), abs=1e-12)
    assert 0.7 < areas["roc_auc"] < 0.95


def test_continuous_scores_stay_within_the_reported_error_bound():
    scores, labels = two_class_sample(20000, seed=1)
    scores[:50] = [80.0, -80.0] * 25  # beyond the histogram's range: the end bins
    hist = ScoreHistogram()
    for part in np.array_split(np.arange(scores.size), 7):  # accumulated over batches
        hist.update(torch.from_numpy(scores[part]).float(), torch.from_numpy(labels[part]))
    areas = hist.compute()
    exact = rank_auc(scores.astype(np.float32), labels)
    assert abs(areas["roc_auc"] - exact) <= areas["roc_auc_max_error"] + 1e-12
    assert areas["roc_auc_max_error"] < 1e-3
    assert areas["average_precision"] == pytest.approx(step_average_precision(scores, labels), abs=1e-3)


def test_threshold_figures_equal_direct_counts_and_ignored_pixels_are_left_out():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 2, (2, 9, 11))
    target[0, :3] = 255
    logits = rng.normal(size=(2, 2, 9, 11))
    prediction = logits.argmax(1)
    confusion = ConfusionMatrix(2)
    confusion.update(torch.from_numpy(prediction), torch.from_numpy(target))
    hist = ScoreHistogram()
    hist.update(class_one_log_odds(torch.from_numpy(logits)), torch.from_numpy(target))
    got = binary_metrics(confusion.matrix, hist)
    valid = target != 255
    t, p = target[valid], prediction[valid]
    tp, tn = np.sum((t == 1) & (p == 1)), np.sum((t == 0) & (p == 0))
    fp, fn = np.sum((t == 0) & (p == 1)), np.sum((t == 1) & (p == 0))
    assert got["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert got["specificity"] == pytest.approx(tn / (tn + fp))
    assert got["precision"] == pytest.approx(tp / (tp + fp))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert int(hist.counts.sum()) == valid.sum()
    score = logits[:, 1] - logits[:, 0]
    assert abs(got["roc_auc"] - rank_auc(score[valid], t)) <= got["roc_auc_max_error"] + 1e-12


def test_log_odds_from_probabilities_match_those_from_logits():
    logits = torch.randn(2, 2, 5, 5) * 4
    from_probs = class_one_log_odds(logits.softmax(1), probabilities=True)
    assert torch.allclose(from_probs, logits[:, 1] - logits[:, 0], atol=1e-4)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="two-class output"):
        class_one_log_odds(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="ids other than 0, 1"):
        ScoreHistogram().update(torch.zeros(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="2 x 2"):
        binary_metrics(torch.zeros(3, 3), torch.zeros(2, BINS))
    empty = binary_metrics(torch.tensor([[5, 1], [0, 0]]), torch.zeros(2, BINS))
    assert np.isnan(empty["sensitivity"]) and np.isnan(empty["roc_auc"])  # no class-1 pixel: undefined


class FixedScores(nn.Module):
    """A 'model' whose class-1 logit is the image's first channel (class 0's is 0)."""

    def forward(self, images):
        return {"out": torch.stack([torch.zeros_like(images[:, 0]), images[:, 0]], 1)}


@pytest.mark.parametrize("protocol", ["default", "semseg"])
def test_evaluate_reports_the_two_class_figures_of_the_model_scores(protocol):
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(3):
        targets = torch.from_numpy(rng.integers(0, 2, (2, 8, 8)))
        images = torch.from_numpy(rng.normal(size=(2, 3, 8, 8))).float() + targets[:, None].float()
        batches.append((images, targets))
    cfg = InferenceConfig(protocol=protocol, tile=8, stride=6)
    metrics = evaluate(FixedScores(), batches, 2, torch.device("cpu"), cfg)
    assert set(BINARY_KEYS) <= set(metrics)
    scores = torch.cat([images[:, 0] for images, _ in batches]).flatten().numpy()
    labels = torch.cat([targets for _, targets in batches]).flatten().numpy()
    if protocol == "default":  # semseg averages each crop with its mirror image: other scores
        assert abs(metrics["roc_auc"] - rank_auc(scores, labels)) <= metrics["roc_auc_max_error"] + 1e-6
        assert metrics["f1"] == pytest.approx(metrics["dice"][1])
    assert 0.6 < metrics["roc_auc"] <= 1
    assert "roc_auc" not in evaluate(nn.Identity(), [], 3, torch.device("cpu"))  # not for three classes


@pytest.fixture(scope="module")
def isbi_run(tmp_path_factory):
    root = make("isbi", tmp_path_factory.mktemp("data"), size=32)
    run_dir = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="isbi", data_root=str(root),
                      iters=2, batch_size=2, crop_size=32, val_every=2, val_batch_size=2, workers=0,
                      device="cpu", progress=False, run_dir=str(run_dir))
    return root, run_dir, Trainer(cfg).fit()


def test_validation_and_eval_report_the_two_class_figures(isbi_run, tmp_path, capsys):
    root, run_dir, best = isbi_run
    assert set(BINARY_KEYS) <= set(best)
    out = tmp_path / "metrics.json"
    eval_script.main([str(run_dir / "best.pth"), "--device", "cpu", "--workers", "0", "--json", str(out)])
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    for key in BINARY_KEYS:
        assert record[key] == pytest.approx(best[key], nan_ok=True)
        assert key in printed
    assert "roc_auc_max_error" in record


def test_predict_probs_writes_float16_probabilities_whose_argmax_is_the_png(isbi_run, tmp_path):
    root, run_dir, _ = isbi_run
    from PIL import Image
    image = next((root / "image").glob("*.png"))
    predict_script.main([str(run_dir / "best.pth"), str(image), "--out", str(tmp_path), "--device", "cpu",
                         "--probs", "--no-overlay"])
    probs = np.load(tmp_path / f"{image.stem}.npy")
    width, height = Image.open(image).size
    assert probs.dtype == np.float16 and probs.shape == (2, height, width)
    assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=2e-3)
    assert (np.asarray(Image.open(tmp_path / f"{image.stem}.png")) == probs.argmax(0)).all()
