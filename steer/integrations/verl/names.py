"""The loss-mode names steer registers in verl (no imports: the plugin needs them even when the
rest of steer fails to import, to register loss modes that report the failure)."""

LOSS_MODE_NAMES = (
    "steer",
    "steer_reference",
    "steer_linear",
    "steer_binary",
    "forking_tokens",
    "quadrant",
    "steer_clip_cov",
    "steer_kl_cov",
    "entropy_adv",
)
