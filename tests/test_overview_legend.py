"""The overview legend: a box with one coloured square and name per class."""

from __future__ import annotations

import numpy as np

from wsi_pipeline.overview import draw_legend


def test_legend_draws_each_colour_in_the_chosen_corner():
    img = np.full((400, 700, 3), 200, np.uint8)
    colours = [(200, 0, 0), (0, 150, 0), (0, 0, 220)]
    out = draw_legend(img, zip(("Tumor", "Dermis", "Inflammation"), colours), corner="top-left")
    assert out.shape == img.shape and out.dtype == np.uint8
    left = out[:, :350]
    for c in colours:
        assert (np.abs(left.astype(int) - c).sum(axis=2) == 0).sum() >= 50  # a filled square of each
    assert (out[:, 350:] == 200).all()  # the right half untouched
    np.testing.assert_array_equal(img, 200)  # input not modified


def test_no_entries_no_legend():
    img = np.zeros((50, 50, 3), np.uint8)
    np.testing.assert_array_equal(draw_legend(img, []), img)
