"""A small synthetic slide with a results folder, for the viewer tests (no napari needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from tiling import ArraySlide

W, H, MPP = 3000, 2000, 0.5


def he_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` H&E-like image (pink tissue ellipse, purple nuclei) and ``(N, 2)`` nucleus centres (x, y)."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 245, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    tissue = ((xx - W / 2) / (W * 0.42)) ** 2 + ((yy - H / 2) / (H * 0.4)) ** 2 < 1
    img[tissue] = (232, 170, 200)
    centres = []
    while len(centres) < 400:
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        if tissue[int(y), int(x)]:
            centres.append((x, y))
    centres = np.array(centres)
    for x, y in centres:
        y0, y1, x0, x1 = int(y) - 8, int(y) + 9, int(x) - 8, int(x) + 9
        sub = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2 < 49
        img[y0:y1, x0:x1][sub] = (110, 60, 150)
    return img, centres


def make_results(out: Path, *, seed: int = 0) -> tuple[ArraySlide, Path]:
    """Write tissue, nuclei (400, with measurements and an unknown property), mitoses (+ hotspot),
    margins into ``out``; returns the in-memory slide and ``out``."""
    from wsi_pipeline.annotations import Feature, write_geojson

    img, centres = he_image(seed)
    rng = np.random.default_rng(seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    tissue = shapely.Polygon(np.c_[W / 2 + W * 0.42 * np.cos(np.linspace(0, 6.28, 90)),
                                   H / 2 + H * 0.4 * np.sin(np.linspace(0, 6.28, 90))])
    write_geojson(out / "tissue.geojson", [
        Feature(tissue, classification="Tissue", color=(80, 160, 80), measurements={"Area mm^2": 1.9}),
        Feature(shapely.box(200, 900, 320, 1100), classification="Ink: blue", color=(40, 80, 220),
                extra={"inkColor": "blue"}),
    ])
    nuclei = []
    for i, (x, y) in enumerate(centres):
        ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        r = 7 + rng.uniform(-1, 1, 16)
        poly = shapely.Polygon(np.c_[x + r * np.cos(ang), y + r * np.sin(ang)])
        nuclei.append(Feature(poly, object_type="detection", classification="Nucleus", color=(0, 120, 220),
                              measurements={"Detection probability": float(rng.uniform(0.5, 1)), "Area µm^2": float(poly.area * MPP**2)},
                              extra={"qupathUnknown": {"k": i}} if i % 50 == 0 else {}))
    write_geojson(out / "nuclei.geojson.gz", nuclei, properties={"openslide.bounds-x": 0, "openslide.bounds-y": 0})
    mitoses = [Feature(shapely.Point(*centres[i]), object_type="detection",
                       classification="Mitosis" if i % 3 else "Mitosis candidate (unvalidated)",
                       measurements={"Probability": float(p)}) for i, p in zip(range(0, 120, 10), np.linspace(0.3, 0.99, 12))]
    mitoses.append(Feature(shapely.Point(W / 2, H / 2).buffer(300), classification="Mitotic hotspot",
                           name="Hotspot 1 (12 / 2 mm²)", measurements={"Mitoses": 12.0}))
    write_geojson(out / "mitoses.geojson", mitoses)
    write_geojson(out / "margins.geojson", [
        Feature(shapely.LineString([(400, 600), (700, 300), (1200, 200)]), classification="Margin",
                name="Deep margin 1.2 mm"),
        Feature(shapely.LineString([(2000, 1800), (2500, 1500)]), classification="Margin", name="Peripheral 0.4 mm"),
    ])
    write_geojson(out / "synoptic.geojson", [
        Feature(shapely.LineString([(1500, 420), (1500, 900)]), classification="Breslow thickness",
                name="Breslow 0.2 mm", measurements={"Thickness mm": 0.24}),
    ])
    write_regions_fixture(out)
    return ArraySlide(img, mpp=MPP, min_size=512), out


def write_regions_fixture(out: Path) -> np.ndarray:
    """A 12 µm region map of the tissue ellipse: an epidermis band along its top, an
    inflammation focus, dermis elsewhere -> ``regions.npy``, ``regions.geojson`` and the
    summary.json entry (as the run writes them); returns the labels."""
    import json

    from detectors.regions import RegionMap, write_regions

    ds = 12.0 / MPP
    h, w = int(np.ceil(H / ds)), int(np.ceil(W / ds))
    yy, xx = (np.mgrid[0:h, 0:w] + 0.5) * ds
    ell = ((xx - W / 2) / (W * 0.42)) ** 2 + ((yy - H / 2) / (H * 0.4)) ** 2
    labels = np.where(ell < 1, 2, 0).astype(np.uint8)  # Dermis
    labels[(ell < 1) & (ell > 0.8) & (yy < H / 2)] = 1  # Epidermis: top rim
    labels[(xx - 2000) ** 2 + (yy - 1100) ** 2 < 150**2] = 4  # Inflammation
    region_map = RegionMap(labels=labels, um_per_px=12.0, downsample=ds)
    meta = write_regions(out, region_map, {})
    summary = out / "summary.json"
    data = json.loads(summary.read_text()) if summary.exists() else {}
    summary.write_text(json.dumps({**data, "regions": meta}))
    return labels
