"""Pictures and pages for people: class and error overlays, training curves, the HTML report."""

from .curves import CURVES_FILE, plot_curves
from .html import write_report
from .overlays import COLOURS, class_colours, display_image, error_overlay, overlay, thumbnail_step

__all__ = [
    "CURVES_FILE", "plot_curves", "write_report", "COLOURS", "class_colours", "display_image", "error_overlay", "overlay",
    "thumbnail_step",
]
