"""Training losses, chosen by name: `--loss ce` (the default), `ohem`, `dice`, `focal`, and sums
such as `ce+dice` or `ce+0.5*dice`, with options from `--loss-kwargs JSON`.

Each loss of the registry (`LOSSES`) maps logits [N, C, H, W] and targets [N, H, W] (255:
ignored) to a scalar; `takes_pixel_weights` says whether it also takes a per-pixel weight
map [N, H, W]. `SegmentationLoss` adds the terms up and applies the one auxiliary rule of
every loss: loss(out) + aux_weight * loss(aux), where the model returns 'aux' in training.

Options of `--loss-kwargs` go to each term whose constructor takes them (`{"gamma": 1}` to
focal, `{"eps": 0.5}` to dice), or to one term only when nested under its name
(`{"dice": {"class_weights": [1, 3]}}`). Two options belong to the loss as a whole:
`class_weights` (a list with one weight per class, or `median-freq` / `inverse-log`,
computed from the training masks by utils/class_weights.py) for every term that takes
them, and `pixel_weights` (`unet-border`: the U-Net paper's weight map, with
`border_class`, `border_w0`, `border_sigma`; see utils/weight_map.py), computed per
augmented training mask in the data loader. The flags `--class-weights` and
`--pixel-weights` / `--border-*` are shorthands for them.

A new loss is one class here plus one line in `LOSSES`.
"""
from __future__ import annotations

import inspect
import re
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from datasets.base import IGNORE_INDEX

from .weight_map import UNetBorderWeights


def _class_weight_of_targets(class_weights: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return class_weights.float()[torch.where(valid, target, 0)]


def _weighted_mean(per_pixel: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   class_weights: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
    """sum_x m(x) l(x) / sum_x m(x) c(x) over the labelled pixels, where l already carries the class
    weight c of x's target (1 without) and m is the pixel weight (1 without).

    This is how PyTorch's cross-entropy normalises class weights, so uniform pixel weights give
    the unweighted loss and the loss keeps its scale whatever the weight map's magnitude (the
    U-Net paper's energy is a plain sum)."""
    m = valid.float() if weights is None else weights.float() * valid
    denominator = m if class_weights is None else m * _class_weight_of_targets(class_weights, target, valid)
    return (per_pixel.float() * m).sum() / denominator.sum().clamp_min(1e-12)


class CrossEntropy(nn.Module):
    """Cross-entropy over the labelled pixels, with optional class weights and label smoothing."""

    takes_pixel_weights = True

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ignore_index, self.label_smoothing = ignore_index, float(label_smoothing)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def per_pixel(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none",
                               label_smoothing=self.label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        if pixel_weights is None:
            weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index,
                                   label_smoothing=self.label_smoothing)
        return _weighted_mean(self.per_pixel(logits, target), target, target != self.ignore_index,
                              self.class_weights, pixel_weights)


class OhemCrossEntropy(CrossEntropy):
    """Cross-entropy over the hard pixels only (online hard example mining, as the Cityscapes
    recipes of PSPNet and DeepLab use it): those whose probability of their true class is below
    `threshold`, and at least the `min_kept` hardest labelled pixels of the batch."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: torch.Tensor | None = None,
                 threshold: float = 0.7, min_kept: int = 100_000) -> None:
        super().__init__(ignore_index, class_weights)
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold is a probability in (0, 1], got {threshold}")
        if not isinstance(min_kept, int) or min_kept < 0:
            raise ValueError(f"min_kept must be a whole number >= 0, got {min_kept}")
        self.threshold, self.min_kept = float(threshold), min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        valid = target != self.ignore_index
        with torch.no_grad():  # which pixels count; no host sync, so the step stays asynchronous
            probability = logits.detach().float().softmax(1)
            true = probability.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
            true = torch.where(valid, true, torch.inf)  # an ignored pixel is never kept
            keep = true < self.threshold
            if self.min_kept > 0:
                kth = true.flatten().kthvalue(min(self.min_kept, true.numel())).values  # inf: too few labelled
                keep |= true <= kth
            keep &= valid
        weights = keep.float() if pixel_weights is None else pixel_weights.float() * keep
        return _weighted_mean(self.per_pixel(logits, target), target, valid, self.class_weights, weights)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., ICCV 2017): cross-entropy scaled by (1 - p_true)^gamma, so that
    pixels already right count less; class weights play the paper's alpha. gamma = 0 is the
    (weighted) cross-entropy."""

    takes_pixel_weights = True

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: torch.Tensor | None = None,
                 gamma: float = 2.0) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.ignore_index, self.gamma = ignore_index, float(gamma)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        valid = target != self.ignore_index
        ce = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        focal = (1 - torch.exp(-ce)).pow(self.gamma) * ce
        if self.class_weights is not None:
            focal = focal * _class_weight_of_targets(self.class_weights, target, valid)
        return _weighted_mean(focal, target, valid, self.class_weights, pixel_weights)


class DiceLoss(nn.Module):
    """1 - the soft Dice coefficient per class, averaged over the classes (weighted by the class
    weights where given): Milletari et al., "V-Net", 3DV 2016, Eq. 1, with squared
    denominators (`squared=False`: plain sums). Sums run over the batch's labelled pixels;
    `eps` keeps a class absent from both prediction and labels at Dice 1."""

    takes_pixel_weights = False

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: torch.Tensor | None = None,
                 eps: float = 1.0, squared: bool = True) -> None:
        super().__init__()
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.ignore_index, self.eps, self.squared = ignore_index, float(eps), bool(squared)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)
        probabilities = logits.float().softmax(1) * valid
        one_hot = torch.zeros_like(probabilities).scatter_(1, (target * valid[:, 0]).unsqueeze(1), 1) * valid
        dims = (0, 2, 3)
        overlap = (probabilities * one_hot).sum(dims)
        predicted = probabilities.pow(2).sum(dims) if self.squared else probabilities.sum(dims)
        dice = (2 * overlap + self.eps) / (predicted + one_hot.sum(dims) + self.eps)  # one_hot squared is one_hot
        if self.class_weights is None:
            return 1 - dice.mean()
        weights = self.class_weights.float()
        return ((1 - dice) * weights).sum() / weights.sum()


LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropy,
    "ohem": OhemCrossEntropy,
    "dice": DiceLoss,
    "focal": FocalLoss,
}

# Options of the loss as a whole (see the module's docstring) with their defaults.
PIXEL_WEIGHTS = ("none", "unet-border")
BORDER_DEFAULTS = {"border_class": 1, "border_w0": 10.0, "border_sigma": 5.0}


class SegmentationLoss(nn.Module):
    """sum_i w_i L_i(out) + aux_weight * sum_i w_i L_i(aux).

    The auxiliary term is the deep supervision of PSPNet (weight 0.4 in the paper);
    it is only present when the model returns 'aux' (training mode). `pixel_weight_map`,
    when set, computes each training mask's per-pixel weights in the data loader; the
    engine passes them to the terms that take them.
    """

    def __init__(self, terms: list[tuple[float, nn.Module]], aux_weight: float = 0.4,
                 pixel_weight_map: Callable | None = None) -> None:
        super().__init__()
        self.factors = [float(factor) for factor, _ in terms]
        self.terms = nn.ModuleList(term for _, term in terms)
        self.aux_weight, self.pixel_weight_map = aux_weight, pixel_weight_map

    def _total(self, logits: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor | None) -> torch.Tensor:
        total = None
        for factor, term in zip(self.factors, self.terms):
            value = term(logits, target, pixel_weights if getattr(term, "takes_pixel_weights", False) else None)
            value = value if factor == 1 else factor * value
            total = value if total is None else total + value
        return total

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        """`pixel_weights` [N, H, W] (optional): a per-pixel loss weight, e.g. the U-Net border weight map."""
        loss = self._total(outputs["out"], target, pixel_weights)
        if "aux" in outputs and self.aux_weight:
            loss = loss + self.aux_weight * self._total(outputs["aux"], target, pixel_weights)
        return loss


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """'ce+0.5*dice' -> [(1.0, 'ce'), (0.5, 'dice')]; a bad name lists the valid ones."""
    terms = []
    for part in spec.split("+"):
        match = re.fullmatch(r"\s*(?:([0-9]*\.?[0-9]+)\s*\*\s*)?([a-z_][a-z0-9_-]*)\s*", part)
        factor = float(match.group(1)) if match and match.group(1) else 1.0
        if match is None or match.group(2) not in LOSSES or not factor > 0:
            raise ValueError(f"--loss {spec!r}: each term is a loss name, optionally times a positive factor "
                             f"('ce+0.5*dice'); loss names: {', '.join(LOSSES)}")
        terms.append((factor, match.group(2)))
    names = [name for _, name in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"--loss {spec!r} names a loss twice")
    return terms


def _accepts(cls: type, option: str) -> bool:
    return option in inspect.signature(cls.__init__).parameters and option != "ignore_index"


def build_loss(spec: str, options: dict, *, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.4,
               num_classes: int | None = None,
               class_weights_from_data: Callable[[str], torch.Tensor] | None = None) -> SegmentationLoss:
    """The loss `spec` ('ce', 'ce+dice', ...) with `options` (--loss-kwargs, see the docstring).

    `class_weights_from_data(method)` computes 'median-freq' / 'inverse-log' weights; without
    it (when only checking a config) named class weights are left out. Bad names, options or
    values raise ValueError naming them."""
    terms = parse_loss(spec)
    options = dict(options)
    pixel_weights = options.pop("pixel_weights", "none")
    border = {key: options.pop(key, default) for key, default in BORDER_DEFAULTS.items()}
    class_weights = _class_weights(options.pop("class_weights", None), num_classes, class_weights_from_data)
    own = {name: options.pop(name) for _, name in terms if isinstance(options.get(name), dict)}
    classes = [LOSSES[name] for _, name in terms]
    for key in options:
        if not any(_accepts(cls, key) for cls in classes):
            valid = sorted({p for cls in classes for p in inspect.signature(cls.__init__).parameters} - {
                "self", "ignore_index", "class_weights"})
            raise ValueError(f"--loss-kwargs: {key!r} is not an option of --loss {spec} (its options: "
                             f"{', '.join(valid + ['class_weights', 'pixel_weights', *BORDER_DEFAULTS])})")
    built = []
    for (factor, name), cls in zip(terms, classes):
        kwargs = {key: value for key, value in options.items() if _accepts(cls, key)}
        for key, value in own.get(name, {}).items():
            if not _accepts(cls, key):
                raise ValueError(f"--loss-kwargs: {name} has no option {key!r}")
            kwargs[key] = _class_weights(value, num_classes, class_weights_from_data) if key == "class_weights" \
                else value
        if "class_weights" not in kwargs and class_weights is not None and _accepts(cls, "class_weights"):
            kwargs["class_weights"] = class_weights
        try:
            built.append((factor, cls(ignore_index=ignore_index, **kwargs)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"--loss-kwargs for {name}: {err}") from None
    return SegmentationLoss(built, aux_weight, _pixel_weight_map(pixel_weights, border, built, ignore_index,
                                                                 num_classes))


def _class_weights(value, num_classes: int | None, from_data: Callable | None) -> torch.Tensor | None:
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        if value not in ("median-freq", "inverse-log"):
            raise ValueError(f"class_weights {value!r}: give median-freq, inverse-log or one number per class")
        return from_data(value) if from_data is not None else None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and v >= 0 for v in value):
        raise ValueError(f"class_weights {value!r}: give median-freq, inverse-log or one number >= 0 per class")
    if num_classes is not None and len(value) != num_classes:
        raise ValueError(f"class_weights has {len(value)} numbers for {num_classes} classes")
    return torch.tensor(value, dtype=torch.float32)


def _pixel_weight_map(kind: str, border: dict, terms: list, ignore_index: int,
                      num_classes: int | None) -> UNetBorderWeights | None:
    if kind not in PIXEL_WEIGHTS:
        raise ValueError(f"pixel_weights {kind!r} is not one of: {', '.join(PIXEL_WEIGHTS)}")
    if kind == "none":
        if border != BORDER_DEFAULTS:
            raise ValueError(f"{', '.join(k for k in border if border[k] != BORDER_DEFAULTS[k])} only apply with "
                             f"pixel_weights unet-border")
        return None
    if not any(getattr(term, "takes_pixel_weights", False) for _, term in terms):
        takers = [name for name, cls in LOSSES.items() if getattr(cls, "takes_pixel_weights", False)]
        raise ValueError(f"pixel_weights {kind}: no term of the loss takes per-pixel weights "
                         f"(those that do: {', '.join(takers)})")
    if num_classes is not None and not 0 <= border["border_class"] < num_classes:
        raise ValueError(f"border_class {border['border_class']} is not a class index (0..{num_classes - 1})")
    if not border["border_sigma"] > 0 or not border["border_w0"] >= 0:
        raise ValueError(f"need border_sigma > 0 and border_w0 >= 0, got {border}")
    return UNetBorderWeights(border["border_class"], border["border_w0"], border["border_sigma"], ignore_index)


def check_loss(spec: str, options: dict) -> None:
    """Raise ValueError for a bad --loss or --loss-kwargs before any work starts (class weights
    named by method are computed later, from the data)."""
    build_loss(spec, options)
