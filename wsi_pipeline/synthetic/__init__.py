"""Synthetic H&E skin-excision slides with ground truth, for the demo, tests and benchmarks.

>>> from wsi_pipeline.synthetic import make_synthetic_slide
>>> s = make_synthetic_slide("out", width=6144, height=4096, seed=0)
>>> s.path, s.truth_dir   # out/synthetic.svs, out/synthetic_truth/

The SVS is Aperio-like (openslide vendor ``aperio``, mpp, objective power, thumbnail,
label and macro pages carrying *fake* patient data: :data:`PHI_STRINGS`).
"""

from wsi_pipeline.synthetic.phi import PHI_PROPERTIES, PHI_STRINGS
from wsi_pipeline.synthetic.scene import Scene, build_scene
from wsi_pipeline.synthetic.slide import SyntheticSlide, make_synthetic_slide, render_region
from wsi_pipeline.synthetic.truth import TRUTH_FILES

__all__ = [
    "PHI_PROPERTIES",
    "PHI_STRINGS",
    "TRUTH_FILES",
    "Scene",
    "SyntheticSlide",
    "build_scene",
    "make_synthetic_slide",
    "render_region",
]
