"""Training loss: cross-entropy with the ignore index, optional class weights, optional
per-pixel weights and auxiliary term."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datasets.base import IGNORE_INDEX


class SegmentationLoss(nn.Module):
    """loss = CE(out) + aux_weight * CE(aux).

    The auxiliary term is the deep supervision of PSPNet (weight 0.4 in the
    paper); it is only present when the model returns 'aux' (training mode).
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.4,
                 class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    def _ce(self, logits: torch.Tensor, target: torch.Tensor,
            pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        if pixel_weights is None:
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        # Weighted mean over the labelled pixels, normalised as PyTorch normalises class weights:
        # sum_x w(x) c(x) CE(x) / sum_x w(x) c(x), with c the class weight of x's target (1 without).
        # Uniform pixel weights thus give the unweighted loss, and the loss keeps its scale
        # whatever the weight map's magnitude (the U-Net paper's energy is a plain sum).
        per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index,
                                    reduction="none").float()
        valid = target != self.ignore_index
        w = pixel_weights.float() * valid
        if weight is not None:
            w = w * self.class_weights.float()[torch.where(valid, target, 0)]
        return (per_pixel * pixel_weights.float() * valid).sum() / w.sum().clamp_min(1e-12)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor,
                pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        """`pixel_weights` [N, H, W] (optional): a per-pixel loss weight, e.g. the U-Net border weight map."""
        loss = self._ce(outputs["out"], target, pixel_weights)
        if "aux" in outputs and self.aux_weight:
            loss = loss + self.aux_weight * self._ce(outputs["aux"], target, pixel_weights)
        return loss
