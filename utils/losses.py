"""Training loss: cross-entropy with the ignore index, optional class weights and auxiliary term."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationLoss(nn.Module):
    """loss = CE(out) + aux_weight * CE(aux).

    The auxiliary term is the deep supervision of PSPNet (weight 0.4 in the
    paper); it is only present when the model returns 'aux' (training mode).
    """

    def __init__(self, ignore_index: int = 255, aux_weight: float = 0.4,
                 class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        loss = self._ce(outputs["out"], target)
        if "aux" in outputs and self.aux_weight:
            loss = loss + self.aux_weight * self._ce(outputs["aux"], target)
        return loss
