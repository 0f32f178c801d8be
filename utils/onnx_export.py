"""A checkpoint's network as an ONNX graph that takes images as they come (tools/export.py).

The graph's input `image` is float32 RGB in 0..255, shape (N, 3, H, W); the checkpoint's
input normalisation (ImageNet mean/std, or Caffe's BGR minus means) is the graph's first
operations. Its output `logits` is (N, classes, H, W), at the input's size. The graph is the
network alone, i.e. eval.py's `--mode whole` at scale 1: sliding windows, test-time scales,
flips, a validation `base_size` resize or a mirror margin are the caller's to do.

Why PyTorch's TorchScript-based exporter (`dynamo=False`): `torch.export`, behind the newer
one, specialises on the Python arithmetic that these networks do with the input's size
(padding to a multiple of 32, cropping back), and in torch 2.14 it fails or returns a graph
valid for one size. Tracing records that arithmetic as graph operations instead, so a graph
traced once runs at any size, provided the trace took the general path of every
size-dependent branch: it is traced at an "awkward" size (`trace_size`: odd, no multiple of
any stride) and then checked against PyTorch at a second, different size
(`check_agreement`). Networks whose operations fix the size fail that check, and are
exported at one size given by the user (`dynamic=False`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.input_norm import InputNorm

INPUT_NAME, OUTPUT_NAME = "image", "logits"
OPSET = 17
# Largest |ONNX - PyTorch| accepted, relative to the largest |logit| (float32 arithmetic in
# another order: convolution algorithms, fused normalisation). The tests hold every model to it.
RELATIVE_TOLERANCE = 1e-4


class RawImageModel(nn.Module):
    """float32 RGB 0..255 (N, 3, H, W) -> logits (N, C, H, W): normalisation, then the network."""

    def __init__(self, model: nn.Module, norm: InputNorm) -> None:
        super().__init__()
        self.model = model
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in norm.unit_mean_std())
        # (x / 255 - mean) / std as one multiply-add per pixel
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", mean / std, persistent=False)
        self.bgr = norm.bgr

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.bgr:  # a Gather in the graph: Caffe's weights see BGR
            image = image[:, [2, 1, 0]]
        return self.model(image * self.scale - self.shift)["out"]


def trace_size(height: int, width: int) -> tuple[int, int]:
    """An odd size near (height, width), so that tracing takes the general path of every
    size-dependent branch (padding needed, shapes that differ) rather than a special case."""
    return height | 1 if height % 2 == 0 else height + 2, width | 1 if width % 2 == 0 else width + 2


def export_onnx(model: RawImageModel, path: str | os.PathLike, size: tuple[int, int], dynamic: bool,
                opset: int = OPSET) -> None:
    """Write `model` traced at `size` (H, W) to `path`, atomically (a temporary file renamed).

    `dynamic`: batch, height and width are free in the graph; otherwise only the batch.
    Raises the exporter's own error (torch.onnx.errors.OnnxExporterError and the like)
    when an operation cannot be written.
    """
    try:
        import onnx  # noqa: F401 (PyTorch's exporter needs it to write the file)
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx package: `.venv/bin/python -m pip install onnx "
                          "onnxruntime` (make test installs both; training and eval.py need neither)") from None
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    sample = torch.rand(1, 3, *size) * 255
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about every size turned into a Python number; trace_size and the
            # check at a second size are what make that safe, so the warnings would only alarm.
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (sample,), str(partial), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def onnxruntime_session(path: str | os.PathLike):
    """An onnxruntime CPU session; an ImportError that says how to install it when it is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("checking the exported graph needs onnxruntime: "
                          "`.venv/bin/python -m pip install onnxruntime` (make test installs it)") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: a failed check is reported by us
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_difference(session, model: RawImageModel, size: tuple[int, int], batch: int = 1,
                   seed: int = 0) -> tuple[float, float]:
    """(largest |ONNX - PyTorch| over the logits, largest |logit|) on random 0..255 images of `size`."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, *size), generator=generator).float()
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    if got.shape != expected.shape:
        raise ValueError(f"the ONNX graph returned logits of shape {got.shape} for an input of "
                         f"{tuple(images.shape)}; PyTorch returns {expected.shape}")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def agrees(difference: float, scale: float) -> bool:
    return difference <= RELATIVE_TOLERANCE * max(scale, 1.0)
