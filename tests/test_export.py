"""tools/export.py: every registered model as an ONNX graph that takes RGB 0..255 and agrees with
PyTorch (onnxruntime) at two sizes; a short Shapes run's export gives predict.py's class ids."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import models
from models.input_norm import CAFFE_VGG, IMAGENET, input_norm_of
from runs import tiny_config
from conftest import ROOT
from model_cases import CASES
from utils.engine import Trainer
from utils.onnx_export import RawImageModel, agrees, export_onnx, max_difference, onnxruntime_session, trace_size

pytest.importorskip("onnxruntime")  # installed by `make test` (requirements-dev.txt)

_spec = importlib.util.spec_from_file_location("export_tool", ROOT / "tools" / "export.py")
export_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_tool)

# One case per registered model, at its smallest widths (the first of tests/model_cases.py).
ONE_PER_MODEL = list({case.model: case for case in reversed(CASES)}.values())


def test_every_registered_model_has_an_export_case():
    assert sorted(case.model for case in ONE_PER_MODEL) == models.list_models()


def randomised(model: nn.Module) -> nn.Module:
    """Layers initialised to zero (FCN's score layers) get random weights, so that logits differ
    from pixel to pixel and an agreement means something; BatchNorm gets non-trivial statistics."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.mark.parametrize("case", ONE_PER_MODEL, ids=lambda c: c.id)
def test_every_model_exports_and_agrees_with_pytorch_at_two_sizes(case, tmp_path):
    network = randomised(models.build_model(case.model, 3, backbone=case.backbone, **case.kwargs))
    model = RawImageModel(network, input_norm_of(network))
    path = tmp_path / "model.onnx"
    export_onnx(model, path, trace_size(48, 64), dynamic=True)
    session = onnxruntime_session(path)
    for size in [(49, 65), (64, 40)]:  # the traced size, then another with other remainders
        difference, scale = max_difference(session, model, size, batch=2)
        assert scale > 1e-3, "logits without variation would prove nothing"
        assert agrees(difference, scale), f"{case.id} at {size}: |ONNX - PyTorch| {difference} (logits up to {scale})"


@pytest.mark.parametrize("norm", [IMAGENET, CAFFE_VGG], ids=["imagenet", "caffe_bgr"])
def test_the_graph_normalises_raw_pixels_as_the_checkpoint_says(norm):
    class Echo(nn.Module):
        def forward(self, x):
            return {"out": x}

    pixels = torch.randint(0, 256, (2, 3, 5, 7)).float()
    expected = norm.normalize(pixels / 255)
    torch.testing.assert_close(RawImageModel(Echo(), norm)(pixels), expected, rtol=1e-5, atol=1e-4)


class SizeBranch(nn.Module):
    """A network whose Python branch on the input's width a trace cannot follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return {"out": y * 2 if x.shape[-1] % 2 else y}


def test_a_network_that_fixes_its_size_is_refused_with_the_reason_then_exports_at_one_size(tmp_path):
    model = RawImageModel(SizeBranch(), IMAGENET)
    path = tmp_path / "fixed.onnx"
    size = trace_size(32, 32)
    export_onnx(model, path, size, dynamic=True)
    state = {"config": {"crop_size": 32}}
    with pytest.raises(SystemExit) as err:
        export_tool.check(path, model, state, size, dynamic=True)
    assert "--height H --width W" in str(err.value) and "fixes the input size" in str(err.value)
    assert not path.exists()  # a graph known to be wrong is not left behind
    export_onnx(model, path, (32, 32), dynamic=False)
    export_tool.check(path, model, state, (32, 32), dynamic=False)


@pytest.mark.parametrize("argv, message", [
    (["--height", "64"], "go together"),
    (["--out", "model.pt"], "ending in .onnx"),
])
def test_bad_flags_fail_before_any_work(argv, message, capsys):
    args = ["missing.pth", "--out", "model.onnx", *argv] if argv[0] != "--out" else ["missing.pth", *argv]
    with pytest.raises(SystemExit):
        export_tool.parse_args(args)
    assert message in capsys.readouterr().err


def test_the_export_of_a_shapes_run_gives_predict_pys_class_ids(tmp_path, capsys):
    import predict

    Trainer(tiny_config(tmp_path / "run")).fit()
    checkpoint = tmp_path / "run" / "best.pth"
    onnx_path = export_tool.main([str(checkpoint), "--out", str(tmp_path / "shapes.onnx")])
    printed = capsys.readouterr().out
    assert "largest |difference|" in printed and "height and width free" in printed

    from datasets import build_dataset
    image = build_dataset("shapes", "val", size=48, length=2)[1][0]  # another size than the run's 32
    rgb = np.asarray(image.permute(1, 2, 0), dtype=np.uint8)[:45, :41]  # and odd sides
    Image.fromarray(rgb).save(tmp_path / "scene.png")
    predict.main([str(checkpoint), str(tmp_path / "scene.png"), "--out", str(tmp_path / "pred"), "--device", "cpu"])
    expected = np.asarray(Image.open(tmp_path / "pred" / "scene.png"))

    session = onnxruntime_session(onnx_path)
    logits = session.run(["logits"], {"image": rgb.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
    ids = logits.argmax(0)
    assert ids.shape == expected.shape
    differ = ids != expected
    top2 = np.sort(logits, axis=0)[-2:]
    # Equal, but for pixels where two classes tie to float precision (none, in practice).
    assert not differ.any() or (top2[1] - top2[0])[differ].max() < 1e-4, f"{differ.sum()} pixels differ"


def test_the_validation_settings_the_graph_leaves_out_are_named():
    assert export_tool.differs_from_whole_image({"val_mode": "whole", "val_scales": [1.0], "val_flip": False}) == []
    notes = export_tool.differs_from_whole_image({"val_mode": "slide", "val_tile": 512, "val_scales": [0.5, 1.0],
                                                  "val_flip": True, "val_mirror_margin": 92})
    assert notes == ["sliding windows of 512", "test-time scales [0.5, 1.0]", "flipped copies",
                     "a mirror margin of 92 pixels"]
