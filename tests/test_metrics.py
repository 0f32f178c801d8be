import math

import pytest
import torch

from utils.metrics import ConfusionMatrix, metrics_from_confusion


def test_hand_computed_confusion_with_ignore_and_absent_classes():
    cm = ConfusionMatrix(4)
    # the ignored pixel predicted as 2 must not count; classes 2 and 3 are absent from both
    cm.update(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 255]))
    assert cm.matrix.tolist() == [[1, 0, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    m = cm.compute()
    assert m["acc"] == pytest.approx(3 / 4)
    assert m["acc_cls"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["iou"][0] == pytest.approx(1 / 2)
    assert m["iou"][1] == pytest.approx(2 / 3)
    assert math.isnan(m["iou"][2]) and math.isnan(m["iou"][3])
    assert m["mean_iu"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["fwavacc"] == pytest.approx(1 / 4 * 1 / 2 + 3 / 4 * 2 / 3)


def test_class_predicted_but_absent_from_target_counts_as_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 2], [1, 1]]), torch.tensor([[0, 0], [1, 1]]))
    m = cm.compute()
    assert m["iou"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert m["mean_iu"] == pytest.approx(0.5)
    assert m["acc_cls"] == pytest.approx((1 / 2 + 1) / 2)  # class 2 has no target pixels: left out


def test_updates_accumulate_like_one_big_update():
    torch.manual_seed(1)
    pred, target = torch.randint(0, 5, (2, 40, 30)), torch.randint(0, 5, (2, 40, 30))
    target[0, :5] = 255
    one, two = ConfusionMatrix(5), ConfusionMatrix(5)
    one.update(pred, target)
    two.update(pred[:1], target[:1])
    two.update(pred[1:], target[1:])
    assert torch.equal(one.matrix, two.matrix)
    assert one.matrix.sum() == (target != 255).sum()


def test_perfect_prediction_scores_one():
    target = torch.randint(0, 3, (10, 10))
    m = metrics_from_confusion(torch.diag(torch.bincount(target.flatten(), minlength=3)))
    assert m["acc"] == m["acc_cls"] == m["mean_iu"] == pytest.approx(1.0)
    assert m["fwavacc"] == pytest.approx(1.0)


def test_bad_input_is_rejected():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.zeros(2), torch.tensor([0, 7]))
