"""Framework-free tensor functions: token statistics, entropy-change estimators, STEER weights,
advantages, policy losses and the method registry. No model and no I/O in here."""
