"""Latency and accuracy benchmarks and the MAE budget (numpy only; no torch, no tensorflow)."""
