"""A small torch CNN that classifies a crop centred on a nucleus.

Classes: index 0 is always ``imposter`` (not a mitotic figure); the others are mitotic
figure classes (e.g. ``normal``, ``atypical``). The probability of a mitotic figure is
``1 - p(imposter)``.

Architecture (about 60 k parameters at width 12, 0.25 MB in float32; sized for training on
a shared CPU): a stride-2 3x3 conv stem, three conv blocks (3x3 conv, batch norm, ReLU; the
middle one with two convs) each followed by 2x max pooling, then global average and max
pooling concatenated, dropout and a linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

#: per-channel mean / std of H&E RGB in [0, 1] used to normalise inputs
MEAN = (0.70, 0.55, 0.72)
STD = (0.18, 0.20, 0.15)


def _block(cin: int, cout: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class MitosisNet(nn.Module):
    """(B, 3, S, S) float RGB in [0, 1] -> (B, n_classes) logits; any S divisible by 16."""

    def __init__(self, n_classes: int = 2, *, width: int = 12, dropout: float = 0.2) -> None:
        super().__init__()
        w = width
        stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.features = nn.Sequential(stem, _block(w, 2 * w, 1), _block(2 * w, 4 * w, 2), _block(4 * w, 6 * w, 1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(12 * w, n_classes))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features((x - self.mean) / self.std)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return self.head(pooled)


def to_input(crops_uint8: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 tensor -> (B, 3, S, S) float32 in [0, 1]."""
    return crops_uint8.permute(0, 3, 1, 2).float().div_(255.0)


def mitosis_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) logits -> (B,) probability of any mitotic class (1 - p(class 0))."""
    return 1.0 - torch.softmax(logits.float(), 1)[:, 0]
