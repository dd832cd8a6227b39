"""Helpers shared by the benchmark modules: machine description and results files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    try:  # a shared machine's load explains noisy timings
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        pass
    return info


def write_results(name: str, title: str, markdown_body: str, data: dict) -> Path:
    """Write ``results/<name>.md`` (human) and ``results/<name>.json`` (machine)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    load = f", load average {info['load_avg_1m']} when written" if "load_avg_1m" in info else ""
    header = (
        f"# {title}\n\nMeasured {info['date']} on {info['cpu']} ({info['cores']} cores, torch {info['torch']}, "
        f"{info['device']}{load}).\n\n"
    )
    md = RESULTS_DIR / f"{name}.md"
    md.write_text(header + markdown_body.rstrip() + "\n")
    (RESULTS_DIR / f"{name}.json").write_text(
        json.dumps({"machine": info, **data}, indent=2, default=str) + "\n"
    )
    return md
