"""The StarDist2D network in torch, layer for layer as stardist builds it in Keras.

Layout (names are the Keras layer names, used by :mod:`detectors.stardist.keras_h5`)::

    input (B, C, H, W)
      -> [grid stem] n_conv_per_depth 3x3 convs (n_filter_base) + max-pool, until the
         accumulated pooling equals ``grid``                     (Keras: unnamed conv2d*)
      -> U-Net: down_level_{n}_no_{i}, max_{n}; middle_{i}; up_level_{n}_no_{i}
      -> features (3x3, net_conv_after_unet filters)
      -> prob (1x1, sigmoid) and dist (1x1, linear)
    prob (B, 1, H/gy, W/gx), dist (B, n_rays, H/gy, W/gx)

All convolutions use 'same' padding and ReLU; up-sampling is nearest-neighbour and the
skip connection is concatenated *after* the up-sampled tensor (channel order matters
for loading weights).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from detectors.stardist.config import StarDistConfig


def _conv(c_in: int, c_out: int, kernel: tuple[int, int]) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding="same")


class StarDistNet(nn.Module):
    """StarDist2D U-Net; ``forward(x)`` returns ``(prob, dist)``.

    x : (B, n_channel_in, H, W) float32, normalised; H and W multiples of ``config.div_by``.
    prob : (B, 1, H / grid_y, W / grid_x) in [0, 1].
    dist : (B, n_rays, H / grid_y, W / grid_x) ray lengths in input pixels.
    """

    def __init__(self, config: StarDistConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        k = c.unet_kernel_size
        self.stem_pools: list[tuple[int, int]] = []
        stem: list[nn.Module] = []
        channels = c.n_channel_in
        pooled = [1, 1]
        while tuple(pooled) != tuple(c.grid):
            pool = tuple(1 + int(g > p) for g, p in zip(c.grid, pooled))
            pooled = [p * q for p, q in zip(pooled, pool)]
            for _ in range(c.unet_n_conv_per_depth):
                stem.append(_conv(channels, c.unet_n_filter_base, k))
                channels = c.unet_n_filter_base
            self.stem_pools.append(pool)
        self.stem = nn.ModuleList(stem)

        self.named = nn.ModuleDict()
        width = lambda n: int(c.unet_n_filter_base * c.unet_expansion**n)  # noqa: E731
        skips = []
        for n in range(c.unet_n_depth):
            for i in range(c.unet_n_conv_per_depth):
                self.named[self._key(f"down_level_{n}_no_{i}")] = _conv(channels, width(n), k)
                channels = width(n)
            skips.append(channels)
        for i in range(c.unet_n_conv_per_depth - 1):
            self.named[self._key(f"middle_{i}")] = _conv(channels, width(c.unet_n_depth), k)
            channels = width(c.unet_n_depth)
        last = width(max(0, c.unet_n_depth - 1))
        self.named[self._key(f"middle_{c.unet_n_conv_per_depth}")] = _conv(channels, last, k)
        channels = last
        for n in reversed(range(c.unet_n_depth)):
            channels += skips[n]
            for i in range(c.unet_n_conv_per_depth - 1):
                self.named[self._key(f"up_level_{n}_no_{i}")] = _conv(channels, width(n), k)
                channels = width(n)
            out = width(max(0, n - 1))
            self.named[self._key(f"up_level_{n}_no_{c.unet_n_conv_per_depth}")] = _conv(channels, out, k)
            channels = out
        if c.net_conv_after_unet > 0:
            self.named["features"] = _conv(channels, c.net_conv_after_unet, k)
            channels = c.net_conv_after_unet
        self.named["prob"] = nn.Conv2d(channels, 1, 1)
        self.named["dist"] = nn.Conv2d(channels, c.n_rays, 1)

    def _key(self, name: str) -> str:
        return self.config.unet_prefix + name

    def keras_layers(self) -> list[tuple[str | None, nn.Conv2d]]:
        """(Keras layer name or None for the unnamed stem convs, conv) in Keras' layer order."""
        return [(None, conv) for conv in self.stem] + [(name, conv) for name, conv in self.named.items()]

    def receptive_radius(self) -> int:
        """An upper bound, in input pixels, on how far from an output pixel an input pixel can
        change it: each k-wide conv adds (k - 1) / 2 at its scale, each pooling and nearest
        upsampling (p - 1) at the finer scale, plus the output grid's cell. A tile halo at
        least this wide makes the network's output in the tile's core independent of where the
        tile was cut (tiled == untiled)."""
        c = self.config
        half = max(c.unet_kernel_size) // 2
        pool = max(c.unet_pool)
        scale, r = 1, 0
        for p in self.stem_pools:
            r += c.unet_n_conv_per_depth * half * scale + (max(p) - 1) * scale
            scale *= max(p)
        for _ in range(c.unet_n_depth):
            r += c.unet_n_conv_per_depth * half * scale + (pool - 1) * scale
            scale *= pool
        r += c.unet_n_conv_per_depth * half * scale  # middle
        for _ in range(c.unet_n_depth):
            scale //= pool
            r += (pool - 1) * scale + c.unet_n_conv_per_depth * half * scale
        if c.net_conv_after_unet > 0:
            r += half * scale
        return int(r + max(c.grid) - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        # NHWC: oneDNN (CPU) and cuDNN convolve it without reordering every layer; on CPU
        # this alone makes the versatile_he net ~1.5x faster. Outputs are channels-last too.
        x = x.contiguous(memory_format=torch.channels_last)
        convs = iter(self.stem)
        for pool in self.stem_pools:
            for _ in range(c.unet_n_conv_per_depth):
                x = F.relu(next(convs)(x), inplace=True)
            x = F.max_pool2d(x, pool)
        layer = self.named
        skips = []
        for n in range(c.unet_n_depth):
            for i in range(c.unet_n_conv_per_depth):
                x = F.relu(layer[self._key(f"down_level_{n}_no_{i}")](x), inplace=True)
            skips.append(x)
            x = F.max_pool2d(x, c.unet_pool)
        for i in range(c.unet_n_conv_per_depth - 1):
            x = F.relu(layer[self._key(f"middle_{i}")](x), inplace=True)
        x = F.relu(layer[self._key(f"middle_{c.unet_n_conv_per_depth}")](x), inplace=True)
        for n in reversed(range(c.unet_n_depth)):
            x = F.interpolate(x, scale_factor=c.unet_pool, mode="nearest")
            x = torch.cat([x, skips[n]], dim=1)
            for i in range(c.unet_n_conv_per_depth - 1):
                x = F.relu(layer[self._key(f"up_level_{n}_no_{i}")](x), inplace=True)
            x = F.relu(layer[self._key(f"up_level_{n}_no_{c.unet_n_conv_per_depth}")](x), inplace=True)
        if c.net_conv_after_unet > 0:
            x = F.relu(layer["features"](x), inplace=True)
        return torch.sigmoid(layer["prob"](x)), layer["dist"](x)
