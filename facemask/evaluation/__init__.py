"""Evaluation: metrics over a whole split, and the report (plots + report.html)."""
