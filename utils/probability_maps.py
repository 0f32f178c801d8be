"""Per-pixel class probabilities as predict.py --probs writes them.

NAME.npy holds float16 softmax probabilities, shape (classes, H, W), at the
image's own size (np.load reads it). float16 keeps them to about 3 significant
digits at half the size of float32, enough for thresholds, ROC curves and
ensembling. The palette PNG written beside it is the argmax of these very
float16 values, so the two always agree (where two classes round to the same
probability, the lower class id wins in both).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def float16_probabilities(output: torch.Tensor, protocol: str = "default") -> np.ndarray:
    """float16 probabilities (classes, H, W) of one image's `predict_logits` output [1, C, H, W]
    or [C, H, W]: the softmax of its logits, or the output itself under the semseg protocol,
    which already averages probabilities (utils.inference.semseg_probabilities)."""
    output = output.float()
    if output.ndim == 4:
        if output.shape[0] != 1:
            raise ValueError(f"expected the output of one image, got a batch of {output.shape[0]}")
        output = output[0]
    probabilities = output if protocol == "semseg" else output.softmax(0)
    return probabilities.cpu().numpy().astype(np.float16)


def classes_of_probabilities(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class ids (H, W) of (classes, H, W) probabilities: the argmax, or for two classes and a
    threshold other than 0.5 (utils.inference.predicted_classes), class 1 where its probability
    exceeds the threshold."""
    if threshold == 0.5:
        return probabilities.argmax(0)
    if probabilities.shape[0] != 2:
        raise ValueError(f"a threshold ({threshold}) applies to two classes, not {probabilities.shape[0]}")
    return (probabilities[1] > threshold).astype(np.int64)


def save_probabilities(probabilities: np.ndarray, path: Path | str) -> None:
    """Write (classes, H, W) float16 probabilities as a .npy file."""
    if probabilities.ndim != 3 or probabilities.dtype != np.float16:
        raise ValueError(f"expected float16 (classes, H, W), got {probabilities.dtype} {probabilities.shape}")
    np.save(Path(path), probabilities)
