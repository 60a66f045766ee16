"""Evaluation: metrics (pure), the evaluation loop, reports and plots."""
