"""Evaluation: metrics over a whole split (and, later, reports)."""
