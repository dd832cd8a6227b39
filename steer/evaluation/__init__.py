"""Benchmark evaluation: pass@k / avg@k, generation backends, ``steer eval``."""
