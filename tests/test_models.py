import pytest
import torch

import models
from model_cases import CASES

NUM_CLASSES = 3


def _build(case):
    return models.build_model(case.model, NUM_CLASSES, backbone=case.backbone, pretrained=False, **case.kwargs)


def test_every_registered_model_has_a_case():
    assert {c.model for c in CASES} >= set(models.list_models())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_model_keeps_odd_sizes_trains_and_takes_a_batch_of_one(case):
    """One build per model for the three contracts every model keeps."""
    model = _build(case).eval()
    # 1. logits at the input's resolution, for sizes that are not multiples of 32
    with torch.no_grad():
        out = model(torch.randn(2, 3, 67, 93))
    assert out["out"].shape == (2, NUM_CLASSES, 67, 93)
    assert torch.isfinite(out["out"]).all()

    # 2. training mode: the auxiliary output where the paper has one, and a finite gradient for every parameter
    model.train()
    out = model(torch.randn(2, 3, 64, 80))
    assert ("aux" in out) == case.aux
    sum(o.float().pow(2).mean() for o in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for key, value in out.items():
        assert value.shape == (2, NUM_CLASSES, 64, 80), key

    # 3. the engine may hand it a batch of one (a tiny data set): it trains, or the error names the batch size
    model.zero_grad(set_to_none=True)
    try:
        out = model(torch.randn(1, 3, 48, 64))
        sum(o.float().mean() for o in out.values()).backward()
    except (ValueError, RuntimeError) as err:
        assert "batch" in str(err).lower(), f"unclear error for batch size 1: {err}"
    else:
        assert out["out"].shape == (1, NUM_CLASSES, 48, 64)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="u_net"):
        models.build_model("no_such_net", 3)


def _count_params(name, num_classes, **kwargs):
    # The meta device builds the architecture without allocating or
    # initialising the weights, so full-size models are counted in a blink.
    with torch.device("meta"):
        model = models.build_model(name, num_classes, pretrained=False, **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_fcn_vgg16_parameter_count_matches_the_paper(name):
    # Long et al., CVPR 2015, Table 1: FCN-VGG16 has 134M parameters (PASCAL VOC, 21 classes).
    assert round(_count_params(name, 21, backbone="vgg16") / 1e6) == 134


def test_seg_net_encoder_parameter_count_matches_the_paper():
    # Badrinarayanan et al., TPAMI 2017, Sec. 3: dropping VGG16's fully connected
    # layers "reduces the number of parameters in the SegNet encoder network
    # significantly (from 134M to 14.7M)".
    with torch.device("meta"):
        model = models.build_model("seg_net", 12)
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert round(encoder / 1e6, 1) == 14.7


def test_psp_net_returns_aux_only_in_training():
    model = models.build_model("psp_net", NUM_CLASSES, backbone="resnet18", width=16)
    x = torch.randn(2, 3, 40, 56)
    assert set(model.train()(x)) == {"out", "aux"}
    with torch.no_grad():
        assert set(model.eval()(x)) == {"out"}


def test_duc_hdc_uses_hybrid_rates_and_duc_the_standard_ones():
    def rates(model, layer):
        return [m.dilation[0] for m in getattr(model.backbone, layer).modules()
                if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]

    with torch.device("meta"):
        hdc = models.build_model("duc_hdc", 19)
        plain = models.build_model("duc", 19)
    # ResNet-101: 23 blocks in layer3, 3 in layer4.
    assert rates(hdc, "layer3") == [1, 2, 5, 9] * 5 + [1, 2, 5]
    assert rates(hdc, "layer4") == [5, 9, 17]
    assert rates(plain, "layer3") == [1] + [2] * 22 and rates(plain, "layer4") == [2, 4, 4]
    # DUC predicts num_classes * d^2 channels at stride d = 8.
    assert hdc.head[0].out_channels == 19 * 8 ** 2


@pytest.mark.parametrize("name", ["deeplab_v3", "deeplab_v3_plus"])
def test_deeplab_image_pooling_trains_on_a_batch_of_one(name):
    # ASPP's image-level branch normalises a 1x1 map: a batch of one has one
    # value per channel, so its BN uses (and keeps) its running statistics.
    model = models.build_model(name, NUM_CLASSES, backbone="resnet18", channels=16).train()
    conv, bn = model.aspp.branches[-1][1], model.aspp.branches[-1][2]
    model(torch.randn(1, 3, 48, 64))["out"].mean().backward()
    assert torch.equal(bn.running_mean, torch.zeros(16)) and torch.equal(bn.running_var, torch.ones(16))
    assert conv.weight.grad.abs().sum() > 0
    model(torch.randn(2, 3, 48, 64))
    assert not torch.equal(bn.running_mean, torch.zeros(16))


def _receptive_field_1d(rates):
    """Weights of stacked 3-tap convolutions with these dilations, per input offset."""
    field = torch.ones(1, 1, 1, dtype=torch.float64)
    for r in rates:
        kernel = torch.ones(1, 1, 3, dtype=torch.float64)
        field = torch.nn.functional.conv1d(field, kernel, padding=2 * r, dilation=r)
    return field.flatten()


def test_hdc_rates_leave_no_gridding_holes():
    # Wang et al. (DUC-HDC), Sec. 3.3: stacked equal rates see a checkerboard
    # of the input; HDC rates cover every pixel of their receptive field.
    from models.duc import HDC_RATES
    assert (_receptive_field_1d(HDC_RATES["layer3"]) > 0).all()
    assert (_receptive_field_1d([*HDC_RATES["layer3"], *HDC_RATES["layer4"]]) > 0).all()
    assert not (_receptive_field_1d([2, 2, 2, 2]) > 0).all()
