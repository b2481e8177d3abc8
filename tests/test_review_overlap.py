import numpy as np
import pytest

from lsdebm.errors import InputError
from lsdebm.review.overlap import FN, FP, OVERLAP_COLORS, TN, TP, hex_color, overlap_map


def test_hand_made_case_labels_and_counts():
    pred = np.array([1, 1, 0, 0, 1, 1], np.uint8).reshape(1, 2, 3)
    ref = np.array([1, 0, 1, 0, 0, 1], np.uint8).reshape(1, 2, 3)
    ov = overlap_map(pred, ref)
    assert ov.labels.ravel().tolist() == [TP, FP, FN, TN, FP, TP]
    assert ov.labels.dtype == np.uint8 and ov.labels.shape == (1, 2, 3)
    assert ov.counts == {"TN": 1, "TP": 2, "FP": 2, "FN": 1}


def test_nonzero_labels_and_probabilities_count_as_foreground():
    ov = overlap_map(np.array([[[3, 0, 7]]]), np.array([[[1, 1, 0]]]))
    assert ov.labels.ravel().tolist() == [TP, FN, FP]


def test_legend_colours_are_distinct_and_background_transparent():
    ov = overlap_map(np.ones((2, 2, 2)), np.zeros((2, 2, 2)))
    legend = ov.legend()
    assert [row[0] for row in legend] == ["TP", "FP", "FN"]
    assert [row[3] for row in legend] == [0, 8, 0]
    colours = {row[2] for row in legend}
    assert len(colours) == 3 and all(c[3] == 1.0 for c in colours)
    assert OVERLAP_COLORS[TN][3] == 0.0
    assert hex_color(OVERLAP_COLORS[TP]) == "#009e73"
    assert hex_color(OVERLAP_COLORS[FP]) == "#d55e00"
    assert hex_color(OVERLAP_COLORS[FN]) == "#0072b2"


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="shapes differ"):
        overlap_map(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
