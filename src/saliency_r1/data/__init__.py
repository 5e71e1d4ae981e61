"""Data: the sample schema, the ShapesWorld generator and the real-dataset loaders.

Every source yields plain dicts of one schema (:class:`Sample`, see :mod:`.schema`): ``image``,
``question``, ``answer``, ``boxes`` (pixel xyxy of the original image), ``masks``, ``reasoning``,
``source``, ``id``, ``width``, ``height``. This package sits before ``scoring/`` in the pipeline and
does not import it.
"""

from __future__ import annotations

from ._families import is_distracted
from .loaders import FORMATS, LoadResult, load
from .schema import Sample, format_response
from .sources import DataSource, load_sources
from .shapes import ShapesWorldConfig, corpus, export, generate, scene_objects, to_hf_dataset

__all__ = ["is_distracted", "load", "LoadResult", "FORMATS", "Sample", "format_response", "ShapesWorldConfig", "generate",
           "to_hf_dataset", "export", "corpus", "scene_objects",
           "DataSource", "load_sources"]
