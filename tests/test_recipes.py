"""The training scripts' recipes: each states only what differs from its bases, and builds the
same TrainConfig as before the bases existed.

tests/script_configs.json holds every script's configuration (`dataclasses.asdict`) as the
scripts built it when each still listed its fields in full. A script whose settings change on
purpose changes its entry there too; a new script needs no entry.
"""
import dataclasses
import json
import runpy
from pathlib import Path

import pytest

from utils.engine import TrainConfig
from utils.recipes import CAMVID, FIELDS, Recipe, slide_crop

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.parent.name for p in (ROOT / "train").glob("*/train.py"))
REFERENCE = json.loads((ROOT / "tests" / "script_configs.json").read_text())
# isbi-u-net-dice takes isbi-u-net's configuration as it is and changes the loss only.
REUSES = {"isbi-u-net-dice": ("isbi-u-net", {"loss": "ce+dice"})}


def script_namespace(pair: str) -> dict:
    return runpy.run_path(str(ROOT / "train" / pair / "train.py"), run_name="script_under_test")


def as_json(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("pair", sorted(REFERENCE))
def test_script_builds_its_reference_config(pair):
    # Scripts added after the reference was written have no earlier behaviour to keep; the
    # restated-field check below covers them too.
    assert pair in SCRIPTS, f"train/{pair}/train.py is gone (it is in tests/script_configs.json)"
    cfg = script_namespace(pair)["cfg"]
    assert isinstance(cfg, TrainConfig)
    cfg.validate()
    built, reference = as_json(dataclasses.asdict(cfg)), REFERENCE[pair]
    defaults = as_json(dataclasses.asdict(TrainConfig()))
    changed = {name: (reference[name], built.get(name, "<missing>")) for name in reference
               if built.get(name, "<missing>") != reference[name]}
    assert not changed, f"{pair}: (reference, now) differ: {changed}"
    # Fields added to TrainConfig after the reference was written keep their defaults here.
    added = {name: value for name, value in built.items() if name not in reference and value != defaults[name]}
    assert not added, f"{pair}: fields missing from tests/script_configs.json set away from their defaults: {added}"


@pytest.mark.parametrize("pair", [p for p in SCRIPTS if p not in REUSES])
def test_script_states_only_what_differs_from_its_bases(pair):
    recipe = script_namespace(pair).get("recipe")
    assert isinstance(recipe, Recipe), f"train/{pair}/train.py builds its cfg without a Recipe"
    assert recipe.restated() == [], (f"train/{pair}/train.py restates what its bases (or TrainConfig's "
                                     f"defaults) already give: {recipe.restated()}")
    assert recipe.changes, f"train/{pair}/train.py changes nothing: it duplicates another script"


def test_reusing_script_takes_the_other_config_unchanged_but_for_its_changes():
    for pair, (source, changes) in REUSES.items():
        assert script_namespace(pair)["cfg"] == dataclasses.replace(script_namespace(source)["cfg"], **changes)


def test_restated_names_fields_equal_to_the_bases_or_defaults():
    recipe = Recipe(CAMVID, crop_size=[360, 480], iters=20000, lr=0.01, hflip=True, pretrained=1)
    # crop (a list for the base's tuple), lr and hflip (TrainConfig's defaults) restate; pretrained=1 is
    # not the boolean True, iters differs.
    assert recipe.restated() == ["crop_size", "hflip", "lr"]
    assert recipe.config().iters == 20000 and recipe.config().val_every == CAMVID["val_every"]


def test_later_bases_and_changes_override_earlier_ones():
    cfg = Recipe({"iters": 5, "lr": 0.5}, {"iters": 7}, lr=0.25).config()
    assert (cfg.iters, cfg.lr) == (7, 0.25)
    assert slide_crop(769) == {"crop_size": 769, "val_mode": "slide", "val_tile": 769, "val_stride": 513}


def test_configs_do_not_share_a_base_dict():
    base = {"model_kwargs": {"width": 8}}
    first, second = Recipe(base).config(), Recipe(base).config()
    first.model_kwargs["width"] = 99
    assert second.model_kwargs == {"width": 8} and base["model_kwargs"] == {"width": 8}


def test_unknown_fields_are_refused_by_name():
    with pytest.raises(TypeError, match="unknown TrainConfig field.*learning_rate"):
        Recipe(learning_rate=0.1)
    with pytest.raises(TypeError, match="recipe base: itres"):
        Recipe({"itres": 10}).config()
    assert "iters" in FIELDS
