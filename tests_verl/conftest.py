"""The verl suite (run in .venv-verl by `make test-verl`; not collected by the default suite).

Its helper modules sit next to the tests under names that cannot collide with the top-level
``tests`` package the verl wheel installs into site-packages.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
