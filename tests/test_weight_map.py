"""The U-Net paper's border weight map, against a hand-built two-cell case."""
import math

import numpy as np
import pytest

from utils.weight_map import class_balance_weights, unet_weight_map


def two_cells(gap: int) -> np.ndarray:
    """Two 6 x 4 cells (class 1) on background (class 0), `gap` background columns apart."""
    mask = np.zeros((10, 10 + gap + 4), dtype=np.int64)
    mask[2:8, 2:6] = 1
    mask[2:8, 6 + gap:10 + gap] = 1
    return mask


def test_class_balance_weights_mean_one_and_ignore_zero():
    mask = np.array([[0, 0, 0, 1], [255, 255, 1, 1]])
    weights = class_balance_weights(mask)
    # 6 labelled pixels, 3 of each class: 6 / (2 * 3) = 1 for both
    assert weights[0, 0] == weights[0, 3] == 1.0 and weights[1, 0] == 0
    mask = np.array([[0, 0, 0, 1]])  # 3 of class 0, 1 of class 1: 4/(2*3), 4/(2*1)
    assert class_balance_weights(mask)[0].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])


def test_two_cell_case_exact_values():
    gap = 3  # gap columns 6, 7, 8; the middle one, 7, is 2 pixel steps from each cell
    mask = two_cells(gap)
    weights = unet_weight_map(mask, w0=10, sigma=5)
    wc = class_balance_weights(mask)
    background_wc, cell_wc = wc[0, 0], wc[4, 3]

    def expected(d1, d2):
        return background_wc + 10 * math.exp(-(d1 + d2) ** 2 / (2 * 5 ** 2))

    # midway: d1 = d2 = (gap + 1) / 2 = 2 (centre-to-centre distance to each cell's nearest pixel)
    assert weights[4, 7] == pytest.approx(expected(2, 2), rel=1e-6)
    # every gap pixel on a cell row has d1 + d2 = gap + 1
    assert weights[4, 6] == pytest.approx(expected(1, 3), rel=1e-6)
    # above the gap, row 0 column 7: sqrt(2^2 + 2^2) to the corners (2, 5) and (2, 9)
    assert weights[0, 7] == pytest.approx(expected(math.sqrt(8), math.sqrt(8)), rel=1e-6)
    # cell pixels carry the class weight only
    assert weights[4, 3] == pytest.approx(cell_wc)
    # far left: d1 = 2 (to (4, 2)), d2 = 9 - 0 = 9 (to (4, 9))
    assert weights[4, 0] == pytest.approx(expected(2, 9), rel=1e-6)
    # a wider gap weighs less in its middle
    wide = unet_weight_map(two_cells(9))
    assert wide[4, 10] - class_balance_weights(two_cells(9))[4, 10] == pytest.approx(
        10 * math.exp(-10 ** 2 / 50), rel=1e-6)


def test_ignore_pixels_weigh_zero_and_single_cell_has_no_border_term():
    mask = two_cells(3)
    mask[0, :] = 255
    weights = unet_weight_map(mask)
    assert (weights[0] == 0).all()
    single = np.zeros((12, 12), dtype=np.int64)
    single[3:8, 3:8] = 1
    assert np.array_equal(unet_weight_map(single), class_balance_weights(single))


def test_windowed_distances_match_unwindowed():
    rng = np.random.default_rng(0)
    mask = (rng.random((64, 80)) < 0.55).astype(np.int64)  # many small cells
    from scipy import ndimage
    mask = ndimage.binary_opening(mask).astype(np.int64)
    fast = unet_weight_map(mask)
    exact = unet_weight_map(mask, cutoff=1e6)
    assert np.abs(fast - exact).max() < 1e-5
