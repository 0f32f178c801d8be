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
def test_output_matches_input_size_for_odd_sizes(case):
    model = _build(case).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 67, 93))
    assert out["out"].shape == (2, NUM_CLASSES, 67, 93)
    assert torch.isfinite(out["out"]).all()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_training_backward_gives_finite_gradients(case):
    model = _build(case).train()
    out = model(torch.randn(2, 3, 64, 80))
    assert ("aux" in out) == case.aux
    loss = sum(o.float().pow(2).mean() for o in out.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for key, value in out.items():
        assert value.shape == (2, NUM_CLASSES, 64, 80), key


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="u_net"):
        models.build_model("no_such_net", 3)
