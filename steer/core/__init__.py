"""Framework-free tensor functions: token statistics, entropy-change estimators, STEER weights,
advantages, per-token policy losses, the one aggregation, the tables of pure functions and the
method table, the method registry, metric reductions and the typed non-finite error. No model and
no I/O in here; docs/core.md lists the modules and the integration API."""
