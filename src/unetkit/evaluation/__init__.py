"""Scores: class metrics, the ISBI 2012 errors, instance scores; files paired with ground truth."""

from . import metrics
from .evaluate import evaluate, format_summary

__all__ = ["metrics", "evaluate", "format_summary"]
