"""Scene-scale inference: tiled prediction and embeddings over GeoTIFFs of any size, georeferenced out, and export.

See :mod:`skysense.inference.scene` (the pipeline), :mod:`~skysense.inference.tiling` (tiles, blending, chunks),
:mod:`~skysense.inference.sources` (reading the inputs), :mod:`~skysense.inference.models` (loading checkpoints),
:mod:`~skysense.inference.writer` (COG output) and :mod:`~skysense.inference.export` (ONNX).
"""

from skysense.inference.models import SceneModel, load_scene_model
from skysense.inference.scene import SceneReport, predict_scene
from skysense.inference.sources import SceneSources, SeriesSource

__all__ = ["SceneModel", "SceneReport", "SceneSources", "SeriesSource", "load_scene_model", "predict_scene"]
