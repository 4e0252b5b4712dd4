"""Evaluation: metrics, tables and pictures."""
