"""U-Net on the generated Shapes data set: the repository's CPU demo.

Setting: U-Net (Ronneberger et al. 2015) at width 16 (the paper uses 64) with
BatchNorm, trained from scratch with AdamW (lr 3e-3, poly decay) on 64 x 64
images, batch 8, 1500 iterations, flips only. Chosen so that a 2-core CPU
reaches val mean_iu >= 0.90 in a few minutes (measured with `make demo`: 0.9950 on
one CPU, 0.9927 on another: runs repeat exactly on one CPU model, not across them;
the README gives the times); every value can be overridden from the command line.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import SHAPES, U_NET, Recipe

recipe = Recipe(
    SHAPES, U_NET,
    model_kwargs={"width": 16},
    iters=1500,
    val_every=250,
    optimizer="adamw",
    lr=3e-3,
    crop_size=64,
    scale_min=1.0,  # the generator already varies size, position and rotation; resampling
    scale_max=1.0,  # would blur the background noise that tells shapes from background
    val_batch_size=50,
    workers=1,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
