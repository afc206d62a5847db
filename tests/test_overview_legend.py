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


def test_scale_bar_has_the_length_it_says():
    """Overviews carry a scale bar: the longest round length up to a fifth of the picture,
    drawn bottom-left as a black bar exactly that many µm long at the picture's pixel size."""
    from wsi_pipeline.overview import draw_scale_bar

    img = np.full((600, 1000, 3), 230, np.uint8)
    for um_per_px, mm in ((10.0, 2.0), (4.0, 0.5), (1.0, 0.2), (0.96, 0.1)):
        out = draw_scale_bar(img, um_per_px)
        black = np.all(out == 0, axis=2)
        rows = np.flatnonzero(black.any(1))
        bar_row = black[rows.max()]  # the bar is the lowest black: the label sits above it
        assert bar_row.sum() == round(mm * 1000 / um_per_px) + 1, (um_per_px, mm)
        assert np.flatnonzero(bar_row).max() < 1000 / 2 and rows.min() > 600 / 2  # bottom-left
        assert black[rows.min():rows.max() - 10].any()  # its label, written above
    np.testing.assert_array_equal(img, 230)  # input not modified
    np.testing.assert_array_equal(draw_scale_bar(img, float("nan")), img)  # unknown pixel size: no bar
