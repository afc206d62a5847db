"""QuPath-dialect GeoJSON (>= 0.4 written; 0.2/0.3 exports read) for slides' objects.

>>> from wsi_pipeline.annotations import Feature, write_geojson, read_geojson
>>> write_geojson("out.geojson", [Feature(shapely.box(0, 0, 10, 10), classification="Tumor")])
>>> ann = read_geojson("out.geojson"); ann.features[0].classification
'Tumor'

Coordinates are ``(x, y)`` level-0 pixels; :mod:`tiling.coords` is the one
place that converts to numpy/napari ``(row, col)``.
"""

from wsi_pipeline.annotations.colors import DEFAULT_CLASS_COLORS, INK_COLORS, class_color, pack_rgb, unpack_rgb
from wsi_pipeline.annotations.convert import SCORE_MEASUREMENT, features_to_instances, instances_to_features
from tiling.coords import bounds_properties, geometry_to_rc, geometry_to_xy, rc_to_xy, xy_to_rc
from wsi_pipeline.annotations.feature import OBJECT_TYPES, Feature, new_id
from wsi_pipeline.annotations.read import Annotations, iter_geojson, read_geojson
from wsi_pipeline.annotations.repair import repair_geometries
from wsi_pipeline.annotations.write import GeoJSONWriter, write_geojson

__all__ = [
    "Annotations",
    "DEFAULT_CLASS_COLORS",
    "Feature",
    "GeoJSONWriter",
    "INK_COLORS",
    "OBJECT_TYPES",
    "SCORE_MEASUREMENT",
    "bounds_properties",
    "class_color",
    "features_to_instances",
    "geometry_to_rc",
    "geometry_to_xy",
    "instances_to_features",
    "iter_geojson",
    "new_id",
    "pack_rgb",
    "rc_to_xy",
    "read_geojson",
    "repair_geometries",
    "unpack_rgb",
    "write_geojson",
    "xy_to_rc",
]
