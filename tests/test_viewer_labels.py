"""Legible annotation labels: short texts, shown only at zooms where they cannot overlap."""

from __future__ import annotations

import numpy as np

from viewers.labels import LABEL_BOX_PX, label_anchors, min_zoom, short_label


def test_short_label_prefers_the_name_and_cuts_long_text():
    assert short_label("Deep margin 1.2 mm", "Margin") == "Deep margin 1.2 mm"
    assert short_label(None, "Tumor") == "Tumor"
    assert short_label("", None) == ""
    cut = short_label("uninked edge (uninked edge) (Margin: uninked edge)", "Margin")
    assert len(cut) == 28 and cut.endswith("…") and cut.startswith("uninked edge (uninked")


def test_min_zoom_separates_the_nearest_pair_by_one_label_box():
    w, h = LABEL_BOX_PX
    anchors = np.array([[0.0, 0.0], [0.0, 1000.0], [5000.0, 0.0]])  # nearest pair: 1000 px apart in columns
    z = min_zoom(anchors)
    assert np.isclose(z, w / 1000.0 * np.sqrt(2))
    # at that zoom the nearest labels are a box apart on screen (diagonal rule: at least the width)
    assert 1000.0 * z >= w
    # one line apart vertically needs far less zoom than side by side
    assert min_zoom(np.array([[0.0, 0.0], [1000.0, 0.0]])) < z
    assert min_zoom(anchors[:1]) == 0.0
    assert min_zoom(np.zeros((2, 2))) == float("inf")


def test_label_anchors_are_upper_left_corners():
    shapes = [np.array([[10, 20], [30, 5], [15, 40]]), np.array([[1, 2], [3, 4]])]
    np.testing.assert_array_equal(label_anchors(shapes), [[10, 5], [1, 2]])
    assert label_anchors([]).shape == (0, 2)
