"""The single-process GRPO trainer (``steer train``), its configuration, checkpoints and metrics,
and the CPU demo (``steer demo``) that trains GRPO and STEER side by side on the testbed."""
