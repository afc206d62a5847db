"""Test-time augmentation of the torch StarDist: rays renumbered and grids aligned under mirroring."""

import numpy as np
import pytest
import torch
from stardist.geometry import star_dist

from detectors.stardist.predict import mirror_rays, predict_dihedral


def _shape() -> np.ndarray:
    """An asymmetric object (an L with a bump) so every mirror image differs."""
    lab = np.zeros((64, 64), np.int32)
    lab[10:40, 12:22] = 1
    lab[30:40, 12:50] = 1
    lab[24:30, 40:44] = 1
    return lab


@pytest.mark.parametrize("kind", ["x", "y", "transpose"])
def test_mirror_rays_match_stardist_distances(kind):
    lab = _shape()
    d = star_dist(lab, 16, mode="cpp")
    mirrored = {"x": lab[:, ::-1], "y": lab[::-1], "transpose": lab.T}[kind]
    d_m = star_dist(np.ascontiguousarray(mirrored), 16, mode="cpp")
    back = {"x": d_m[:, ::-1], "y": d_m[::-1], "transpose": d_m.transpose(1, 0, 2)}[kind]
    np.testing.assert_allclose(back[..., mirror_rays(16, kind)], d, atol=1e-4)
    assert not np.allclose(back, d, atol=1e-2)  # the renumbering is needed


class _Sampler(torch.nn.Module):
    """An exactly mirror-equivariant stand-in for the network: prob = channel 0 at each grid
    point, ray k = channel 0 one pixel along ray k's direction (8 rays: axes and diagonals)."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid
        phi = 2 * np.pi * np.arange(8) / 8
        self.offsets = [(int(round(np.sin(a))), int(round(np.cos(a)))) for a in phi]

    def forward(self, x):
        g = self.grid
        c = x[:, :1]
        dist = torch.cat([torch.roll(c, (-dy, -dx), (2, 3)) for dy, dx in self.offsets], 1)
        return c[:, :, ::g, ::g], dist[:, :, ::g, ::g]


@pytest.mark.parametrize("grid", [1, 2])
def test_dihedral_mean_of_an_equivariant_net_is_the_net(grid):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 48)
    net = _Sampler(grid)
    prob, dist = net(x)
    prob_t, dist_t = predict_dihedral(net, x, n_rays=8, grid=(grid, grid))
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # borders wrap
    torch.testing.assert_close(prob_t[inner], prob[inner])
    torch.testing.assert_close(dist_t[inner], dist[inner])


def test_dihedral_mean_averages_the_views():
    """A net that answers every cell with its input's first-column mean sees 1 in the four
    views that keep columns as columns (the mirror of column 0 is column 0) and 8/32 in the
    four transposed ones (their first column is the first row): the mean is 0.625."""
    x = torch.zeros(1, 3, 32, 32)
    x[..., :8] = 1.0

    def first_column(v):
        prob = v[:, :1, ::2, ::2] * 0 + v[:, :1, :, :1].mean()
        return prob, torch.zeros(v.shape[0], 8, *prob.shape[2:])

    prob, _ = predict_dihedral(first_column, x, n_rays=8, grid=(2, 2))
    torch.testing.assert_close(prob, torch.full_like(prob, 0.625))
