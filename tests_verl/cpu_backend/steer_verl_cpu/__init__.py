"""Test-only verl plugin: a CPU platform (``VERL_PLATFORM=cpu``) and an HF-transformers rollout
backend (``actor_rollout_ref.rollout.name=hf_cpu``), registered through verl's own registries when
``import verl`` loads the ``verl.plugins`` entry points. See ``platform.py`` and ``rollout.py``."""

import logging

from steer_verl_cpu import platform as _platform  # noqa: F401  (registers "cpu")
from steer_verl_cpu import rollout as _rollout

_rollout.register()
logging.getLogger(__name__).info("steer_verl_cpu: registered platform 'cpu' and rollout 'hf_cpu'")
