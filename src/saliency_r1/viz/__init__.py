"""Pictures of saliency results: static PNG figures and one self-contained interactive HTML report.

>>> import tempfile
>>> from saliency_r1.viz import synthetic_result, report_html
>>> report_html(synthetic_result(), f"{tempfile.mkdtemp()}/report.html").suffix
'.html'
"""

from __future__ import annotations

from .html import comparison_html, report_html
from .png import holistic_png, overlay_png, token_grid_png
from .synthetic import synthetic_boxes, synthetic_result

__all__ = ["overlay_png", "token_grid_png", "holistic_png", "report_html", "comparison_html",
           "synthetic_result", "synthetic_boxes"]
