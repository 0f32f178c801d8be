"""U-Net on ISBI 2012 with a Dice + cross-entropy loss: one field changed from isbi-u-net.

This script keeps everything of train/isbi-u-net/train.py (the U-Net paper's
recipe, its flags, resume, checkpoints, evaluation) and changes one field, the
loss, chosen by name from utils/losses.py; `python train/isbi-u-net/train.py
--loss ce+dice` trains the same. docs/extending.md shows the other ways to
change what the engine builds.

Loss: cross-entropy (with the paper's border weight map, as in isbi-u-net)
plus (1 - soft Dice), the soft Dice averaged over the classes (Milletari et al.,
"V-Net", 3DV 2016, Eq. 1, with squared denominators; utils.losses.DiceLoss);
pixels labelled 255 take no part in either term. Weigh the terms with
`--loss ce+0.5*dice`, smooth with `--loss-kwargs '{"eps": 1.0}'`.

CPU recipe (the same flags as isbi-u-net's):
    python train/isbi-u-net-dice/train.py --model-kwargs '{"width": 16}' --crop-size 256 --batch-size 2 \\
        --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --iters 800 --val-every 200 \\
        --val-tile 256 --val-stride 192 --val-mirror-margin 32 --workers 1 --device cpu
"""
import dataclasses
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run

# The paper's recipe, unchanged but for the loss.
cfg = dataclasses.replace(runpy.run_path(str(Path(__file__).resolve().parents[1] / "isbi-u-net" / "train.py"))["cfg"],
                          loss="ce+dice")

if __name__ == "__main__":
    run(cfg)
