"""Paint windows of a :class:`~wsi_pipeline.synthetic.scene.Scene` as H&E pixels.

Colour model: Beer-Lambert. Each window gets a hematoxylin and an eosin optical-density
map (plus inks and marker), converted once to RGB as ``glass * exp(-OD)``; textures are
procedural noise in global coordinates, so windows rendered separately tile seamlessly.
Nuclei are looked up in a grid index, so a window only draws the few nuclei near it.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely.geometry.base import BaseGeometry

from wsi_pipeline.synthetic.noise import fbm, value_noise
from wsi_pipeline.synthetic.nuclei import LYMPHOCYTE, MITOSIS, TUMOR
from wsi_pipeline.synthetic.scene import Scene
from wsi_pipeline.synthetic.textures import TextureBank

# unit optical-density colour vectors (R, G, B absorbance)
HEMATOXYLIN = np.array([0.64, 0.72, 0.30], np.float32)
EOSIN = np.array([0.16, 0.86, 0.48], np.float32)
MELANIN = (0.49, 0.90, 1.41)  # brown pigment, RGB absorbance at full density
INK_OD = {  # RGB absorbance of each ink at full coverage
    "blue": (1.25, 0.75, 0.18),
    "black": (1.7, 1.7, 1.65),
    "green": (1.2, 0.35, 1.0),
    "red": (0.15, 1.3, 1.1),
    "yellow": (0.08, 0.2, 1.4),
    "orange": (0.1, 0.7, 1.5),
    "purple": (0.6, 1.3, 0.35),
}
_CELL = 256  # nuclei grid index cell, level-0 pixels


class TileRenderer:
    """Render level-0 windows of ``scene``: ``renderer.render(x0, y0, w, h) -> (h, w, 3) uint8``."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.px = 1.0 / scene.mpp
        self.seed = scene.seed
        geoms = [scene.tissue, scene.epidermis, scene.keratin, scene.tumor, scene.cleft, scene.marker]
        geoms += [scene.vessel_walls, scene.vessel_lumens]
        geoms += [ink.region for ink in scene.inks]
        # the lymphoid aggregate's cellular background fades in over ~12 um (three steps)
        self._focus = []
        if scene.inflammation is not None and not scene.inflammation.is_empty:
            self._focus = [scene.inflammation.buffer(d * self.px) for d in (6.0, 0.0, -6.0)]
        geoms += self._focus
        for g in geoms:
            if g is not None:
                shapely.prepare(g)
        self._build_index()
        longest = max(scene.width, scene.height)
        self.bank = TextureBank(px=self.px, seed=scene.seed, size=min(1024, max(256, 1 << (longest - 1).bit_length())))

    # -- nuclei grid index ------------------------------------------------------------
    def _build_index(self) -> None:
        nuc = self.scene.nuclei
        self._ncols = self.scene.width // _CELL + 2
        if len(nuc) == 0:
            self._cells = np.zeros(0, np.int64)
            self._members = np.zeros(0, np.int64)
            return
        cells, members = [], []
        idx = np.arange(len(nuc))
        for dx in (-1, 1):
            for dy in (-1, 1):
                cx = np.floor((nuc.x + dx * (nuc.a + 2)) / _CELL).astype(np.int64) + 1
                cy = np.floor((nuc.y + dy * (nuc.a + 2)) / _CELL).astype(np.int64) + 1
                cells.append(cy * self._ncols + cx)
                members.append(idx)
        pairs = np.unique(np.column_stack([np.concatenate(cells), np.concatenate(members)]), axis=0)
        self._cells, self._members = pairs[:, 0], pairs[:, 1]

    def nuclei_near(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Indices of nuclei whose bounding box may touch the window."""
        cx0, cx1 = x0 // _CELL + 1, (x0 + w - 1) // _CELL + 1
        cy0, cy1 = y0 // _CELL + 1, (y0 + h - 1) // _CELL + 1
        found = []
        for cy in range(cy0, cy1 + 1):
            lo = np.searchsorted(self._cells, cy * self._ncols + cx0, "left")
            hi = np.searchsorted(self._cells, cy * self._ncols + cx1, "right")
            found.append(self._members[lo:hi])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    # -- rendering ----------------------------------------------------------------------
    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` uint8 of the level-0 window at ``(x0, y0)``."""
        sc = self.scene
        layers = []  # (density (h, w), unit OD colour (3,))
        tissue = _raster(sc.tissue, x0, y0, w, h)
        if tissue is not None:
            hema, eos = self._stroma(x0, y0, w, h, tissue)
            self._nuclei(hema, eos, x0, y0, w, h)
            layers += [(hema, HEMATOXYLIN), (eos, EOSIN)]
            pigment = self._melanin(x0, y0, w, h)
            if pigment is not None:
                layers.append((pigment, np.asarray(MELANIN, np.float32)))
            for ink in sc.inks:
                m = _raster(ink.region, x0, y0, w, h)
                if m is not None:
                    cover = 0.55 + 0.45 * fbm(x0, y0, w, h, scale=40 * self.px, seed=self.seed + 31)
                    layers.append((m * cover, INK_OD[ink.color]))
        if sc.marker is not None:
            m = _raster(sc.marker, x0, y0, w, h)
            if m is not None:
                streak = 0.45 + 0.25 * value_noise(x0, y0, w, h, scale=25 * self.px, seed=self.seed + 37)
                layers.append((m * streak, INK_OD.get(sc.marker_color, INK_OD["green"])))
        glass = 246.0 + 3.0 * (value_noise(x0, y0, w, h, scale=400 * self.px, seed=self.seed + 41) - 0.5)
        grain = 1.3 * self.bank.window("grain", x0, y0, w, h) + 0.5
        out = np.empty((h, w, 3), np.uint8)
        for c in range(3):
            if layers:
                od = layers[0][0] * float(layers[0][1][c])
                for dens, vec in layers[1:]:
                    od += dens * float(vec[c])
                v = glass * np.exp(-od)
            else:
                v = glass.copy()
            v += grain
            if c == 2:
                v += 1.5  # faint blue cast of glass and mountant
            np.clip(v, 0, 255, out=v)
            out[..., c] = v
        return out

    def _stroma(self, x0, y0, w, h, tissue):
        """Hematoxylin and eosin density maps ``(h, w)`` float32 of everything but nuclei."""
        sc, px = self.scene, self.px
        t = tissue.astype(np.float32)
        bank = self.bank
        # aperiodic modulation of the periodic collagen: staining and density vary slowly
        tone = value_noise(x0, y0, w, h, scale=300 * px, seed=self.seed + 17)
        gaps = fbm(x0, y0, w, h, scale=35 * px, seed=self.seed + 19, octaves=2)
        open_space = np.clip((gaps - 0.33) * (1 / 0.12), 0.0, 1.0)
        fibres = bank.window("collagen", x0, y0, w, h) * (0.12 + 0.88 * open_space)
        eos = t * ((0.28 + 0.12 * tone) + 0.40 * fibres)
        hema = t * 0.05
        epi = _raster(sc.epidermis, x0, y0, w, h)
        if epi is not None:
            mottle = bank.window("mottle", x0, y0, w, h)
            eos = np.where(epi, 0.30 + 0.10 * mottle, eos)
            hema = np.where(epi, 0.22 + 0.08 * mottle, hema)
        ker = _raster(sc.keratin, x0, y0, w, h)
        if ker is not None:
            lam = bank.window("lamellae", x0, y0, w, h)
            eos = np.where(ker, 0.15 + 0.45 * lam, eos)
            hema = np.where(ker, 0.02, hema)
        focus = [m for m in (_raster(g, x0, y0, w, h) for g in self._focus) if m is not None]
        if focus:
            weight = sum(m.astype(np.float32) for m in focus) / 3.0
            mottle = bank.window("mottle", x0 + 311, y0 + 97, w, h)
            eos = eos * (1 - weight) + weight * (0.15 + 0.08 * mottle)
            hema = hema * (1 - weight) + weight * (0.12 + 0.05 * mottle)
        wall = _raster(sc.vessel_walls, x0, y0, w, h)
        if wall is not None:
            eos = np.where(wall, 0.62 + 0.15 * bank.window("mottle", x0, y0, w, h), eos)
            hema = np.where(wall, 0.08, hema)
        lumen = _raster(sc.vessel_lumens, x0, y0, w, h)
        if lumen is not None:
            eos = np.where(lumen, 0.04 + 1.05 * bank.window("rbc", x0, y0, w, h), eos)
            hema = np.where(lumen, 0.0, hema)
        tum = _raster(sc.tumor, x0, y0, w, h)
        if tum is not None:
            mottle = bank.window("mottle", x0 + 777, y0 + 333, w, h)
            if sc.lesion == "melanoma":  # epithelioid cells: ample pink-amphophilic cytoplasm
                eos = np.where(tum, 0.38 + 0.12 * mottle, eos)
                hema = np.where(tum, 0.14 + 0.06 * mottle, hema)
            else:  # basaloid: scant cytoplasm
                eos = np.where(tum, 0.22 + 0.08 * mottle, eos)
                hema = np.where(tum, 0.36 + 0.10 * mottle, hema)
        cleft = _raster(sc.cleft, x0, y0, w, h)
        if cleft is not None:
            eos = np.where(cleft, 0.03, eos)
            hema = np.where(cleft, 0.01, hema)
        return hema.astype(np.float32), eos.astype(np.float32)

    def _melanin(self, x0, y0, w, h) -> np.ndarray | None:
        """Granular brown pigment in patches of a melanoma ``(h, w)``, or None."""
        sc = self.scene
        if sc.lesion != "melanoma":
            return None
        tum = _raster(sc.tumor, x0, y0, w, h)
        if tum is None:
            return None
        patches = np.clip((fbm(x0, y0, w, h, scale=40 * self.px, seed=self.seed + 43) - 0.62) * 5.0, 0.0, 1.0)
        grains = np.clip(self.bank.window("chromatin", x0 + 501, y0 + 203, w, h) * 2.2 - 0.9, 0.0, 1.0)
        return (tum * patches * (0.2 + 0.7 * grains)).astype(np.float32)

    def _nuclei(self, hema, eos, x0, y0, w, h) -> None:
        """Paint nuclei near the window into ``hema``/``eos`` in place."""
        near = self.nuclei_near(x0, y0, w, h)
        if len(near) == 0:
            return
        nuc = self.scene.nuclei
        chrom = self.bank.window("chromatin", x0, y0, w, h)
        for i in near.tolist():
            a, b = float(nuc.a[i]), float(nuc.b[i])
            cx, cy = float(nuc.x[i]), float(nuc.y[i])
            xa, xb = max(int(cx - a - 2), x0), min(int(cx + a + 3), x0 + w)
            ya, yb = max(int(cy - a - 2), y0), min(int(cy + a + 3), y0 + h)
            if xa >= xb or ya >= yb:
                continue
            gx = np.arange(xa, xb, dtype=np.float32) + 0.5 - cx
            gy = np.arange(ya, yb, dtype=np.float32)[:, None] + 0.5 - cy
            c, s = math.cos(nuc.theta[i]), math.sin(nuc.theta[i])
            u, v = gx * c + gy * s, -gx * s + gy * c
            r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            alpha = np.clip((1.0 - r) * b + 0.5, 0.0, 1.0)
            sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            kind = int(nuc.kind[i])
            if kind == MITOSIS:
                fig = _figure(u, v, a, b, int(nuc.seed[i])) * (0.8 + 0.4 * chrom[sl])
                dens = fig * float(nuc.stain[i]) + 0.14 * (1 - fig)  # clear halo, not glass
                e_in = 0.16 * (1 - fig) + 0.05
            elif kind == LYMPHOCYTE:
                dens = float(nuc.stain[i]) * (0.9 + 0.2 * chrom[sl])
                e_in = 0.05
            elif kind == TUMOR and self.scene.lesion == "melanoma":
                # vesicular chromatin, a thick membrane and one prominent red nucleolus
                rim = np.clip((r - 0.70) / 0.30, 0.0, 1.0)
                k = int(nuc.seed[i])
                nu, nv = ((k % 7) / 7 - 0.5) * 0.5 * a, ((k // 7 % 7) / 7 - 0.5) * 0.5 * b
                nucleolus = np.exp(-((u - nu) ** 2 + (v - nv) ** 2) / (2 * (0.22 * b + 0.3 * self.px) ** 2))
                dens = float(nuc.stain[i]) * (0.42 + 0.45 * chrom[sl] ** 1.5 + 0.55 * rim) + 0.5 * nucleolus
                e_in = 0.08 + 1.1 * nucleolus
            else:
                rim = np.clip((r - 0.72) / 0.28, 0.0, 1.0)
                dens = float(nuc.stain[i]) * (0.62 + 0.6 * chrom[sl] ** 1.5) * (1 + 0.35 * rim)
                e_in = 0.10
            hema[sl] = hema[sl] * (1 - alpha) + alpha * dens
            eos[sl] = eos[sl] * (1 - alpha) + alpha * e_in


def _figure(u, v, a, b, seed) -> np.ndarray:
    """Dark condensed chromosome clumps inside the ellipse (local coordinates u, v)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(7, 12))
    pu = rng.uniform(-0.85, 0.85, k) * a
    pv = rng.normal(0.0, 0.35, k) * b
    sig = rng.uniform(0.18, 0.32, k) * max(b, 0.45 * a)
    dens = np.zeros(np.broadcast(u, v).shape, np.float32)
    for j in range(k):
        dens += np.exp(-(((u - pu[j]) ** 2 + (v - pv[j]) ** 2) / (2 * sig[j] ** 2)))
    return np.clip(dens * 1.4, 0.0, 1.0).astype(np.float32)


def _polygons(geom):
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    if hasattr(geom, "geoms"):
        out = []
        for g in geom.geoms:
            out.extend(_polygons(g))
        return out
    return []


def _raster(geom: BaseGeometry | None, x0: int, y0: int, w: int, h: int) -> np.ndarray | None:
    """Boolean ``(h, w)`` mask of pixel centres inside ``geom``; None when the window misses it."""
    if geom is None or geom.is_empty:
        return None
    bx0, by0, bx1, by1 = geom.bounds
    if bx1 < x0 or by1 < y0 or bx0 > x0 + w or by0 > y0 + h:
        return None
    if geom.contains(shapely.box(x0, y0, x0 + w, y0 + h)):
        return np.ones((h, w), bool)
    clipped = shapely.clip_by_rect(geom, x0 - 2, y0 - 2, x0 + w + 2, y0 + h + 2)
    polys = sorted(_polygons(clipped), key=lambda p: -p.area)
    if not polys:
        return None
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    off = np.array([x0 + 0.5, y0 + 0.5])
    for poly in polys:
        draw.polygon([tuple(p) for p in (np.asarray(poly.exterior.coords) - off)], fill=1)
        for ring in poly.interiors:
            draw.polygon([tuple(p) for p in (np.asarray(ring.coords) - off)], fill=0)
    mask = np.asarray(img, dtype=bool)
    return mask if mask.any() else None


__all__ = ["TileRenderer", "HEMATOXYLIN", "EOSIN", "INK_OD"]
