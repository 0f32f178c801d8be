import time

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from tools import curves_figure


def _run(path, points):
    start = time.time()  # the events file's first event (its creation) carries the real time
    writer = SummaryWriter(str(path))
    writer.add_scalar("train/loss", 1.0, 0, walltime=start)
    for minutes, step, value in points:
        writer.add_scalar("val/mean_iu", value, step, walltime=start + 60 * minutes)
    writer.close()
    return path


def test_curves_are_read_in_minutes_and_drawn_one_colour_per_run(tmp_path):
    first = _run(tmp_path / "a", [(2, 100, 0.2), (5, 200, 0.4)])
    second = _run(tmp_path / "b", [(3, 100, 0.3)])
    curve = curves_figure.read_curve(first, "val/mean_iu")
    assert [(round(m, 2), round(v, 3)) for m, v in curve] == [(2.0, 0.2), (5.0, 0.4)]
    out = curves_figure.main([str(first), str(second), "--out", str(tmp_path / "c.png"), "--labels", "A", "B"])
    picture = np.asarray(Image.open(out))
    assert picture.shape == (*curves_figure.SIZE[::-1], 3)
    for colour in curves_figure.COLOURS[:2]:
        assert (picture == colour).all(-1).sum() > 20  # each run's line and markers
    assert not (picture == curves_figure.COLOURS[2]).all(-1).any()


def test_a_run_without_the_scalar_is_a_clear_error(tmp_path):
    run = _run(tmp_path / "a", [(1, 10, 0.1)])
    with pytest.raises(SystemExit, match="no 'val/acc' scalars"):
        curves_figure.read_curve(run, "val/acc")
    with pytest.raises(SystemExit, match="no TensorBoard events"):
        curves_figure.read_curve(tmp_path, "val/mean_iu")
