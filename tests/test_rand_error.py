"""ISBI 2012 figures: pixel error and the foreground-restricted Rand error, on hand-computed cases."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from utils.cell_segments import best_threshold, filled_rand_error, filled_segments, thresholded_pixel_error
from utils.metrics import RandScore, pixel_error, rand_error

# 0 = membrane, 1 = cell; 4 x 7 images with a membrane frame.
ONE_CELL = np.array([[0, 0, 0, 0, 0, 0, 0],
                     [0, 1, 1, 1, 1, 1, 0],
                     [0, 1, 1, 1, 1, 1, 0],
                     [0, 0, 0, 0, 0, 0, 0]])
SPLIT = ONE_CELL.copy()
SPLIT[:, 3] = 0          # a predicted membrane through the middle: two cells of 2 x 2
TWO_CELLS = SPLIT.copy()  # as ground truth: two cells of 4 pixels


def test_identical_segmentations_score_zero():
    assert rand_error(ONE_CELL, ONE_CELL) == 0
    assert rand_error(TWO_CELLS, TWO_CELLS) == 0
    assert pixel_error(torch.from_numpy(ONE_CELL), torch.from_numpy(ONE_CELL)) == 0


def test_known_split():
    # Ground truth: one cell of 10 pixels. Prediction: two segments of 4 pixels, plus the
    # 2 pixels of the predicted membrane inside the true cell, each its own singleton segment.
    # In the paper's notation (s: predicted sizes, t: true sizes):
    # sum n_ij^2 = 4^2 + 4^2 + 1 + 1 = 34;  sum t_j^2 = 10^2 = 100;  sum s_i^2 = 4^2 + 4^2 + 1 + 1 = 34
    # V_rand = 2 * 34 / (100 + 34) = 34 / 67;  error = 33 / 67 = 0.49254...
    assert rand_error(SPLIT, ONE_CELL) == pytest.approx(33 / 67, abs=1e-12)
    score = RandScore()
    score.update(SPLIT, ONE_CELL)
    figures = score.compute()
    # Arganda-Carreras et al. 2015: V_split = sum n_ij^2 / sum t_j^2 (true sizes) falls with the split,
    # V_merge = sum n_ij^2 / sum s_i^2 (predicted sizes) stays 1: nothing was merged
    assert figures["rand_split"] == pytest.approx(34 / 100)
    assert figures["rand_merge"] == pytest.approx(1.0)
    # pixel error: the 2 membrane pixels inside the cell out of 28
    assert pixel_error(torch.from_numpy(SPLIT), torch.from_numpy(ONE_CELL)) == pytest.approx(2 / 28)


def test_known_merge():
    # Ground truth: two cells of 4 pixels separated by a membrane column. Prediction: one cell
    # over both (and the membrane, which is not ground-truth foreground, so it does not count).
    # sum n_ij^2 = 4^2 + 4^2 = 32;  sum t_j^2 = 4^2 + 4^2 = 32;  sum s_i^2 = 8^2 = 64
    # V_rand = 2 * 32 / (32 + 64) = 2 / 3;  error = 1 / 3
    assert rand_error(ONE_CELL, TWO_CELLS) == pytest.approx(1 / 3, abs=1e-12)
    score = RandScore()
    score.update(ONE_CELL, TWO_CELLS)
    figures = score.compute()
    assert figures["rand_merge"] == pytest.approx(32 / 64)  # the merge lowers the merge score
    assert figures["rand_split"] == pytest.approx(1.0)      # and no true cell was split
    # V_rand is their harmonic mean
    assert figures["v_rand"] == pytest.approx(2 / (1 / figures["rand_split"] + 1 / figures["rand_merge"]))


def test_pooled_over_slices_and_ignore():
    # Two slices pooled: sums add. Split slice (34, 100, 34) + identical slice (32, 32, 32):
    # V_rand = 2 * 66 / (132 + 66) = 2 / 3.
    predictions = torch.from_numpy(np.stack([SPLIT, TWO_CELLS]))
    targets = torch.from_numpy(np.stack([ONE_CELL, TWO_CELLS]))
    assert rand_error(predictions, targets) == pytest.approx(1 / 3, abs=1e-12)
    # ignore pixels of the ground truth are left out of both figures
    target = ONE_CELL.copy()
    target[1, 3] = target[2, 3] = 255
    prediction = SPLIT.copy()
    assert pixel_error(torch.from_numpy(prediction), torch.from_numpy(target)) == 0
    assert rand_error(prediction, target) == 0


def test_diagonal_cells_are_separate_segments():
    # 4-connectivity: cells touching only at a corner are two segments.
    target = np.array([[1, 0], [0, 1]])
    assert rand_error(target, target) == 0
    merged = np.array([[1, 1], [1, 1]])  # one predicted segment over both: n = [1, 1]
    # sum n^2 = 2, sum s^2 = 2, sum t^2 = 4: V = 4 / 6
    assert rand_error(merged, target) == pytest.approx(1 / 3)


def test_segments_given_as_labels_score_as_the_class_maps_components():
    score, by_labels = RandScore(), RandScore()
    score.update(SPLIT, ONE_CELL)
    by_labels.update_segments(ndimage.label(SPLIT == 1)[0], ONE_CELL)
    assert by_labels.compute() == score.compute()
    with pytest.raises(ValueError, match="one image of one shape"):
        by_labels.update_segments(np.stack([SPLIT, SPLIT]), np.stack([ONE_CELL, ONE_CELL]))


def test_filled_segments_grow_seeds_over_the_membranes():
    # Cell probability of two true cells split by a membrane column whose middle is faint (0.6):
    # at 0.5 the gap joins the cells; at 0.7 the seeds stay apart, and filling gives every
    # membrane pixel to its nearest seed, so no true-cell pixel is a singleton.
    probability = np.where(TWO_CELLS == 1, 0.95, 0.05)
    probability[1:3, 3] = 0.6
    assert rand_error((probability > 0.5).astype(int), TWO_CELLS) == pytest.approx(1 / 3)  # merged
    segments = filled_segments(probability, 0.7)
    assert segments.shape == TWO_CELLS.shape and set(np.unique(segments)) == {1, 2}
    assert (segments[:, :3] == segments[1, 1]).all() and (segments[:, 4:] == segments[1, 5]).all()
    assert filled_rand_error([probability], [TWO_CELLS], 0.7) == 0
    assert filled_rand_error([probability], [TWO_CELLS], 0.5) == pytest.approx(1 / 3)
    threshold, errors = best_threshold(lambda t: filled_rand_error([probability], [TWO_CELLS], t),
                                       thresholds=(0.5, 0.7, 0.99))
    assert threshold == 0.7 and errors[0.5] == pytest.approx(1 / 3)
    # No seed at all: each of the 8 true-cell pixels is a singleton. sum n^2 = 8, sum s^2 = 4^2 + 4^2,
    # sum t^2 = 8: V = 16 / 40, error 0.6.
    assert errors[0.99] == pytest.approx(0.6)
    assert not filled_segments(probability, 0.99).any()
    with pytest.raises(ValueError, match="threshold"):
        filled_segments(probability, 1.0)
    with pytest.raises(ValueError, match="one"):
        filled_segments(probability[None], 0.5)


def test_pixel_error_at_a_threshold_counts_labelled_pixels_only():
    # 28 pixels, 8 of them cell. At 0.5 the two faint membrane pixels (0.6) are called cell: 2 / 28
    # wrong; at 0.7 none. A pixel labelled 255 is left out of both counts.
    probability = np.where(TWO_CELLS == 1, 0.95, 0.05)
    probability[1:3, 3] = 0.6
    assert thresholded_pixel_error([probability], [TWO_CELLS], 0.5) == pytest.approx(2 / 28)
    assert thresholded_pixel_error([probability], [TWO_CELLS], 0.7) == 0
    target = TWO_CELLS.copy()
    target[1, 3] = 255
    assert thresholded_pixel_error([probability], [target], 0.5) == pytest.approx(1 / 27)
    assert best_threshold(lambda t: thresholded_pixel_error([probability], [TWO_CELLS], t),
                          thresholds=(0.5, 0.7)) == (0.7, {0.5: pytest.approx(2 / 28), 0.7: 0})
