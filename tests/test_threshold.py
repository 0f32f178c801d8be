"""The decision threshold of two-class data sets (`--threshold`, `--val-threshold`) and the
F1-best threshold that eval.py reports (utils/binary_metrics.best_f1_from_histogram)."""
import numpy as np
import pytest
import torch

from runs import tiny_config
from utils.binary_metrics import ScoreHistogram, best_f1_from_histogram
from utils.checkpoint import migrate
from utils.engine import Trainer
from utils.inference import predicted_classes
from utils.inference_settings import InferenceConfig
from utils.predictor import Predictor
from utils.probability_maps import classes_of_probabilities


def test_threshold_one_half_is_the_argmax_and_others_compare_class_one_probability():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 9) * 3
    assert torch.equal(predicted_classes(logits, InferenceConfig()), logits.argmax(1))
    for threshold in (0.2, 0.35, 0.8):
        expected = (logits.softmax(1)[:, 1] > threshold).long()
        got = predicted_classes(logits, InferenceConfig(threshold=threshold))
        assert torch.equal(got, expected) and 0 < got.sum() < got.numel()
    probabilities = logits.softmax(1)[0].numpy()
    assert np.array_equal(classes_of_probabilities(probabilities, 0.35), probabilities[1] > 0.35)
    # the semseg protocol's output is probabilities already
    semseg = InferenceConfig(threshold=0.35, protocol="semseg")
    assert torch.equal(predicted_classes(logits.softmax(1), semseg), (logits.softmax(1)[:, 1] > 0.35).long())


def test_a_threshold_outside_zero_one_or_on_many_classes_is_refused():
    for value in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="--threshold must lie strictly between 0 and 1"):
            InferenceConfig(threshold=value).validate(flag_prefix="--")
    with pytest.raises(ValueError, match="--val-threshold 0.3 applies to two-class data sets; this one has 4"):
        InferenceConfig(threshold=0.3).check_classes(4, flag_prefix="--val-")
    InferenceConfig().check_classes(4)  # 0.5, the argmax, is every data set's
    with pytest.raises(ValueError, match="applies to two-class"):
        predicted_classes(torch.zeros(1, 3, 4, 4), InferenceConfig(threshold=0.3))
    with pytest.raises(ValueError, match="applies to two classes"):
        classes_of_probabilities(np.zeros((3, 4, 4), np.float16), 0.3)


def test_the_best_f1_of_the_histogram_is_the_best_f1_of_the_raw_scores():
    generator = torch.Generator().manual_seed(1)
    target = (torch.rand(20000, generator=generator) < 0.15).long()
    log_odds = torch.randn(20000, generator=generator) * 2 + (target * 3.0 - 1.5)
    histogram = ScoreHistogram()
    histogram.update(log_odds.view(1, 100, 200), target.view(1, 100, 200))
    best = best_f1_from_histogram(histogram.counts)
    # brute force: F1 of "class 1 where the log-odds reach t" for every pixel's score as t
    order = torch.argsort(log_odds, descending=True)
    true_pos = target[order].cumsum(0).double()
    taken = torch.arange(1, len(order) + 1, dtype=torch.float64)
    f1 = 2 * true_pos / (taken + target.sum())
    assert best["best_f1"] == pytest.approx(f1.max().item(), abs=2e-4)
    # and the returned threshold gives that F1 on the raw probabilities
    chosen = log_odds.sigmoid() >= best["best_f1_threshold"]
    tp = (chosen & (target == 1)).sum().item()
    assert 2 * tp / (chosen.sum().item() + target.sum().item()) == pytest.approx(best["best_f1"], abs=2e-4)
    assert best_f1_from_histogram(torch.zeros(2, 8))["best_f1"] != best_f1_from_histogram(torch.zeros(2, 8))["best_f1"]


def test_checkpoints_of_earlier_layouts_predict_with_the_argmax():
    state = migrate({"format": "semseg-checkpoint", "version": 3, "config": {"val_flip": True}})
    assert state["config"]["val_threshold"] == 0.5 and state["config"]["val_flip"] is True


def test_a_run_of_more_than_two_classes_refuses_a_threshold_before_training(tmp_path):
    with pytest.raises(SystemExit, match="--val-threshold 0.3 applies to two-class data sets; this one has 4"):
        Trainer(tiny_config(tmp_path, val_threshold=0.3))
    Trainer(tiny_config(tmp_path, iters=2, val_every=2)).fit()
    with pytest.raises(SystemExit, match="eval.py: --threshold 0.3 applies to two-class data sets"):
        Predictor.from_checkpoint(tmp_path / "last.pth", "cpu", "eval.py", threshold=0.3)
