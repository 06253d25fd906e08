"""What a benchmark's results say of the machine and the code they were measured on."""
from __future__ import annotations

import os
import platform as python_platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_facts() -> dict:
    """The date, the cores, the CPU, Python and the commit (marked when the tree holds uncommitted changes)."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), cpu)
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    # The results of an earlier run are not changes to what is measured.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/bench/results"],
                           capture_output=True, text=True, cwd=HERE).stdout
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(), "cpu": cpu,
            "python": python_platform.python_version(),
            "commit": commit + (" (with uncommitted changes)" if dirty else "")}
