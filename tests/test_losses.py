"""The loss registry (utils/losses.py): each loss against a direct computation, sums and the
auxiliary rule, the options' routing, and the --loss / --loss-kwargs flags."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import runs
from utils import losses
from utils.cli import parse_config
from utils.engine import TrainConfig, Trainer
from utils.losses import LOSSES, build_loss
from utils.weight_map import UNetBorderWeights


def batch(seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 5, 6, generator=g) * 2
    target = torch.randint(0, classes, (2, 5, 6), generator=g)
    target[0, :2] = 255
    return logits, target


def term(name, **options):
    """The one term of --loss NAME, as the engine builds it."""
    loss = build_loss(name, options, aux_weight=0.0)
    return lambda logits, target, weights=None: loss({"out": logits}, target, weights)


def test_ce_is_pytorchs_cross_entropy_with_weights_ignore_and_smoothing():
    logits, target = batch()
    weights = [0.5, 2.0, 1.5]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=255, label_smoothing=0.1)
    got = term("ce", class_weights=weights, label_smoothing=0.1)(logits, target)
    assert torch.equal(got, expected)


def test_ohem_keeps_the_pixels_below_the_threshold_and_at_least_min_kept():
    logits, target = batch(1)
    valid = target != 255
    true = logits.softmax(1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    for threshold, min_kept in ((0.5, 0), (0.5, 40), (0.05, 3), (0.9, 10 ** 6)):
        ranked = true[valid].sort().values
        kth = ranked[min(min_kept, len(ranked)) - 1] if min_kept else -1.0
        keep = valid & ((true < threshold) | (true <= kth))
        assert keep.sum() >= min(min_kept, int(valid.sum()))
        got = term("ohem", threshold=threshold, min_kept=min_kept)(logits, target)
        assert got.item() == pytest.approx(ce[keep].mean().item(), rel=1e-6), (threshold, min_kept)
    # more to keep than there are labelled pixels: every labelled pixel, the plain cross-entropy
    assert term("ohem", threshold=0.01, min_kept=10 ** 6)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6)


def test_ohem_with_class_weights_normalises_as_cross_entropy():
    logits, target = batch(2)
    weights = torch.tensor([1.0, 3.0, 0.5])
    got = term("ohem", threshold=1.0, min_kept=0, class_weights=weights.tolist())(logits, target)
    assert got.item() == pytest.approx(F.cross_entropy(logits, target, weight=weights, ignore_index=255).item(),
                                       rel=1e-6)


def test_dice_is_one_minus_the_mean_soft_dice_of_the_labelled_pixels():
    logits, target = batch(3)
    valid = target != 255
    p = logits.softmax(1).permute(0, 2, 3, 1)[valid]  # [pixels, classes]
    one_hot = F.one_hot(target[valid], 3).float()
    for squared, eps in ((True, 1.0), (False, 0.0)):
        predicted = (p ** 2 if squared else p).sum(0)
        dice = (2 * (p * one_hot).sum(0) + eps) / (predicted + one_hot.sum(0) + eps)
        got = term("dice", squared=squared, eps=eps)(logits, target)
        assert got.item() == pytest.approx(1 - dice.mean().item(), rel=1e-6)
        weights = torch.tensor([1.0, 0.0, 3.0])
        weighted = term("dice", squared=squared, eps=eps, class_weights=weights.tolist())(logits, target)
        assert weighted.item() == pytest.approx(((1 - dice) * weights).sum().item() / 4, rel=1e-6)


def test_dice_of_a_perfect_prediction_is_zero_and_of_a_wrong_one_is_one():
    target = torch.tensor([[[0, 1], [1, 255]]])
    perfect = torch.tensor([[[[50.0, -50], [-50, 0]], [[-50.0, 50], [50, 0]]]])  # right on every labelled pixel
    assert term("dice", eps=0.0)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert term("dice", eps=0.0)(-perfect, target).item() == pytest.approx(1.0, abs=1e-6)
    # p = 0.5 on the 3 labelled pixels; class c has n_c of them: Dice_c = 2 * 0.5 n_c / (3 * 0.25 + n_c)
    dice = [2 * 0.5 * n / (3 * 0.25 + n) for n in (1, 2)]
    assert term("dice", eps=0.0)(torch.zeros(1, 2, 2, 2), target).item() == pytest.approx(1 - sum(dice) / 2)


def test_focal_down_weights_easy_pixels_and_is_cross_entropy_at_gamma_zero():
    logits, target = batch(4)
    valid = target != 255
    weights = torch.tensor([0.5, 2.0, 1.0])
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    p_true = torch.exp(-ce)
    c = weights[torch.where(valid, target, 0)]
    expected = ((1 - p_true) ** 2 * ce * c)[valid].sum() / c[valid].sum()
    assert term("focal", gamma=2.0, class_weights=weights.tolist())(logits, target).item() == pytest.approx(
        expected.item(), rel=1e-6)
    assert term("focal", gamma=0.0, class_weights=weights.tolist())(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, weight=weights, ignore_index=255).item(), rel=1e-6)


def test_a_sum_adds_its_terms_and_the_auxiliary_rule_applies_to_the_whole_loss():
    logits, target = batch(5)
    aux = logits.flip(1)
    ce, dice = term("ce")(logits, target), term("dice")(logits, target)
    assert build_loss("ce+0.5*dice", {}, aux_weight=0.0)({"out": logits}, target).item() == pytest.approx(
        (ce + 0.5 * dice).item(), rel=1e-6)
    with_aux = build_loss("ce+dice", {}, aux_weight=0.4)({"out": logits, "aux": aux}, target)
    expected = ce + dice + 0.4 * (term("ce")(aux, target) + term("dice")(aux, target))
    assert with_aux.item() == pytest.approx(expected.item(), rel=1e-6)


def test_pixel_weights_reach_only_the_terms_that_take_them():
    logits, target = batch(6)
    weights = torch.rand(target.shape) + 0.1
    loss = build_loss("ce+dice", {"pixel_weights": "unet-border"}, aux_weight=0.0, num_classes=3)
    assert isinstance(loss.pixel_weight_map, UNetBorderWeights)
    valid = target != 255
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    weighted_ce = (ce * weights)[valid].sum() / weights[valid].sum()
    assert loss({"out": logits}, target, weights).item() == pytest.approx(
        (weighted_ce + term("dice")(logits, target)).item(), rel=1e-6)
    with pytest.raises(ValueError, match="no term of the loss takes per-pixel weights .*ce, ohem, focal"):
        build_loss("dice", {"pixel_weights": "unet-border"})
    with pytest.raises(ValueError, match="border_w0 only apply with pixel_weights unet-border"):
        build_loss("ce", {"border_w0": 3.0})
    with pytest.raises(ValueError, match="border_class 3 is not a class index"):
        build_loss("ce", {"pixel_weights": "unet-border", "border_class": 3}, num_classes=3)


def test_options_go_to_the_terms_that_take_them_or_to_the_one_they_are_nested_under():
    loss = build_loss("ce+focal+dice", {"gamma": 1.0, "eps": 0.5, "class_weights": [1.0, 2.0],
                                        "dice": {"class_weights": [3.0, 1.0]}})
    ce, focal, dice = loss.terms
    assert focal.gamma == 1.0 and dice.eps == 0.5
    assert ce.class_weights.tolist() == focal.class_weights.tolist() == [1.0, 2.0]
    assert dice.class_weights.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match=r"'gama' is not an option of --loss ce\+dice \(its options: eps, "
                                         r"label_smoothing, squared, class_weights, pixel_weights"):
        build_loss("ce+dice", {"gama": 2})
    with pytest.raises(ValueError, match="dice has no option 'gamma'"):
        build_loss("ce+dice", {"dice": {"gamma": 2}})
    with pytest.raises(ValueError, match="for focal: gamma must be >= 0"):
        build_loss("focal", {"gamma": -1})
    with pytest.raises(ValueError, match="class_weights has 2 numbers for 3 classes"):
        build_loss("ce", {"class_weights": [1, 2]}, num_classes=3)


@pytest.mark.parametrize("spec, message", [("cee", "loss names: ce, ohem, dice, focal"),
                                           ("ce+", "loss names: ce, ohem, dice, focal"),
                                           ("ce*2", "loss names: ce, ohem, dice, focal"),
                                           ("0*dice", "times a positive factor"),
                                           ("ce+ce", "names a loss twice")])
def test_a_bad_loss_name_fails_before_work_and_lists_the_valid_ones(spec, message, capsys):
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--loss", spec])
    assert message in capsys.readouterr().err


def test_the_flags_are_shorthands_for_loss_options(capsys):
    cfg = parse_config(TrainConfig(), ["--class-weights", "median-freq", "--pixel-weights", "unet-border",
                                       "--border-w0", "5", "--loss", "ohem", "--loss-kwargs", '{"min_kept": 10}'])
    assert cfg.loss_options() == {"class_weights": "median-freq", "pixel_weights": "unet-border",
                                  "border_class": 1, "border_w0": 5.0, "border_sigma": 5.0, "min_kept": 10}
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--class-weights", "median-freq", "--loss-kwargs",
                                     '{"class_weights": "inverse-log"}'])
    assert "--loss-kwargs sets class_weights to 'inverse-log', but --class-weights says 'median-freq'" in \
        capsys.readouterr().err


def test_a_new_loss_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    class L1OnProbabilities(nn.Module):
        takes_pixel_weights = False

        def __init__(self, ignore_index=255, scale: float = 1.0):
            super().__init__()
            self.ignore_index, self.scale = ignore_index, scale

        def forward(self, logits, target, pixel_weights=None):
            valid = (target != self.ignore_index).unsqueeze(1)
            one_hot = F.one_hot(torch.where(valid[:, 0], target, 0), logits.shape[1]).permute(0, 3, 1, 2)
            return self.scale * ((logits.float().softmax(1) - one_hot) * valid).abs().mean()

    monkeypatch.setitem(LOSSES, "l1", L1OnProbabilities)
    cfg = parse_config(runs.tiny_config(tmp_path, iters=2, val_every=2),
                       ["--loss", "ce+l1", "--loss-kwargs", '{"scale": 2.0}'])
    trainer = Trainer(cfg)
    assert [type(t) for t in trainer.criterion.terms] == [losses.CrossEntropy, L1OnProbabilities]
    assert trainer.criterion.terms[1].scale == 2.0
    trainer.fit()
    assert trainer.state.iteration == 2


@pytest.mark.parametrize("loss, options", [("ohem", {"threshold": 0.7, "min_kept": 50}), ("focal", {}),
                                           ("ce+dice", {"label_smoothing": 0.1})])
def test_the_engine_trains_with_each_loss(tmp_path, loss, options):
    trainer = Trainer(runs.tiny_config(tmp_path, iters=2, val_every=2, loss=loss, loss_kwargs=options))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert trainer.criterion.factors == [1.0] * len(loss.split("+"))

