"""Evaluation: metrics, folder/video evaluation, reliability, fairness. Uses the core only."""
