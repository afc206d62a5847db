"""The class names of mitosis points in ``mitoses.geojson``, in one leaf module (no imports)
for the detector, the run's mitosis stage, the synoptic draft and the viewer.

``Mitosis`` comes only from a validated model; an unvalidated scorer's detections are
``Mitosis candidate (unvalidated)``, for review, never counted as mitoses."""

VALIDATED_CLASS = "Mitosis"
UNVALIDATED_CLASS = "Mitosis candidate (unvalidated)"
HOTSPOT_CLASS = "Mitotic hotspot"
