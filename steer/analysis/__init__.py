"""Plots and summaries of training runs (reads metrics JSONL records; no training code)."""
