"""Which detectors a run uses, built from the config (picklable factories for Dask workers)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from detectors.base import Detector
from tiling.errors import InputError

log = logging.getLogger(__name__)
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"  # opt-in model folders, by name

WEIGHTFREE_NOTE = "weight-free nuclei detector (no trained weights; colour deconvolution + watershed; {})"
WEIGHTFREE_KINDS = {
    "weightfree": "each nucleus at its own threshold level",
    "weightfree-fast": "one threshold level: about 2x faster at 0.5 µm/px, dev-set AJI 0.590 instead of 0.593",
}


def resolve_nuclei_model(model: str) -> tuple[str, Path | None]:
    """``(kind, folder)``: kind is ``"weightfree"``, ``"weightfree-fast"`` or ``"stardist"``.

    model : "auto" (StarDist if ``stardist-he`` is in the model cache, else weight-free),
    "weightfree", "weightfree-fast", a registry name (must have been fetched), the name of a
    model folder shipped under the repository's ``models/`` (opt-in ones, e.g.
    ``stardist-monuseg``) or a local model folder.
    """
    if model in WEIGHTFREE_KINDS:
        return model, None
    from detectors.registry import cached_model, load_registry

    if model == "auto":
        folder = cached_model("stardist-he")
        return ("stardist", folder) if folder else ("weightfree", None)
    path = Path(model)
    if path.is_dir():
        return "stardist", path
    shipped = SHIPPED_MODELS / model
    if path.name == model and (shipped / "config.json").is_file():
        return "stardist", shipped
    if model in load_registry():
        folder = cached_model(model)
        if folder is None:
            raise InputError(None, f"model {model!r} is not downloaded: run `wsi-pipeline models fetch {model}` "
                                   "(needs network) or pass a local model folder")
        return "stardist", folder
    raise InputError(path, "nuclei model is neither a model folder nor a known model name (see `wsi-pipeline models`)")


def check_nuclei_model(model: str) -> None:
    """Raise :class:`InputError` (one line naming the folder) when ``model`` cannot be used:
    unknown, not downloaded, or a StarDist folder whose config, thresholds or weights are
    unreadable, or whose weights do not match the sha256 its ``config.json`` records. Cheap
    (no network is built); ``run`` and ``batch`` call it before any slide, so a bad model
    fails at once rather than on the first slide with tissue."""
    kind, folder = resolve_nuclei_model(model)
    if kind == "stardist":
        from detectors.stardist.config import read_model_folder

        read_model_folder(folder)


#: the weight-free detector's working resolution (µm/px), QuPath's default pixel size for cell
#: detection. On the 7 MoNuSeg dev tiles (40x, box-averaged to 0.5): pooled AJI 0.593 at 0.5
#: against 0.605 at 0.25 (monuseg-train 0.424 / 0.432) at a quarter of the pixels, ~4x faster
#: (bench/bench_nuclei_peer.py, which also runs HistomicsTK on the same tiles)
WEIGHTFREE_MPP = 0.5


def working_mpp(slide_mpp: float | None, requested: float | None = None) -> float:
    """The weight-free detector's resolution for a slide: ``requested`` (default
    :data:`WEIGHTFREE_MPP`), but never finer than the slide's own pixels (no upsampling;
    within 2% counts as the same, e.g. a 0.499 µm/px 20x slide runs at 0.5)."""
    mpp = float(requested or WEIGHTFREE_MPP)
    if slide_mpp and slide_mpp > mpp * 1.02:
        log.info("nuclei: slide at %.3f µm/px is coarser than %.3f; detecting at the slide's own pixels", slide_mpp, mpp)
        mpp = float(slide_mpp)
    return mpp


def build_nuclei_detector(kind: str, folder: str | None, device: str, percentiles: dict | None = None,
                          threshold: float | None = None, *, mpp: float | None = None) -> Detector:
    """Build the nuclei detector with its per-slide calibration: StarDist's normalisation
    percentiles, or the weight-free detector's hematoxylin threshold and working ``mpp``."""
    if kind in WEIGHTFREE_KINDS:
        from detectors.nuclei.weightfree import SINGLE_LEVEL, WeightFreeNucleiDetector, WeightFreeParams

        params = WeightFreeParams(**SINGLE_LEVEL) if kind == "weightfree-fast" else None
        return WeightFreeNucleiDetector(device=device, params=params, threshold=threshold, mpp=mpp)
    from detectors.stardist import Percentiles, load_stardist_model

    det = load_stardist_model(folder, device=device)
    if percentiles is not None:
        det = det.with_percentiles(Percentiles(tuple(percentiles["low"]), tuple(percentiles["high"])))
    return det


def nuclei_factory(model: str, device: str, *, slide=None, mpp: float | None = None) -> tuple[Callable[[], Detector], str]:
    """A picklable zero-argument factory and a one-line description for logs and summaries.

    slide : for StarDist, the slide whose normalisation percentiles are computed once here
        (from a low level) so that neighbouring tiles agree; for the weight-free detector,
        the slide whose resolution bounds the working one (:func:`working_mpp`).
    mpp : the weight-free detector's requested working resolution (config ``nuclei.mpp``).
    """
    kind, folder = resolve_nuclei_model(model)
    percentiles = None
    if kind == "stardist" and slide is not None:
        from detectors.stardist import slide_percentiles

        percentiles = slide_percentiles(slide).to_dict()
    factory = functools.partial(build_nuclei_detector, kind, None if folder is None else str(folder), device, percentiles)
    if kind in WEIGHTFREE_KINDS:
        work = working_mpp(slide.mpp[0] if slide is not None else None, mpp)
        factory = functools.partial(factory, mpp=work)
        note = WEIGHTFREE_NOTE.format(f"{WEIGHTFREE_KINDS[kind]}; at {work:g} µm/px")
        # the default detector, not a fallback to warn about on every slide (the warnings a lab
        # tech must read, e.g. an unvalidated mitosis scorer, would drown); summary.json names it
        why = " (no StarDist weights fetched: `wsi-pipeline models fetch stardist-he`)" if model == "auto" else ""
        log.info("nuclei: the %s%s", note, why)
        return factory, note
    return factory, f"StarDist2D (torch) from {folder.name}"


def calibrated(factory: functools.partial, detector: Detector, sample_tiles) -> functools.partial:
    """For the weight-free detector: one hematoxylin threshold for the whole slide, learned
    from ``sample_tiles`` ``(B, H, W, 3)``, so that neighbouring tiles agree (no seams)."""
    if not hasattr(detector, "calibrate") or len(sample_tiles) == 0:
        return factory
    threshold = detector.calibrate(sample_tiles).threshold
    kind, folder, device, percentiles = factory.args[:4]
    return functools.partial(build_nuclei_detector, kind, folder, device, percentiles, threshold, **factory.keywords)
