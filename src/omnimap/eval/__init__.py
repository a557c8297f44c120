"""Evaluation: retrieval metrics (Sat2Cap protocol, 1-based ranks) and the atlas report."""

from omnimap.eval.retrieval import retrieval_metrics

__all__ = ["retrieval_metrics"]
