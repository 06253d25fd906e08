"""The directory gunicorn workers share their metrics through, prepared by the master before it forks.

prometheus-client chooses its multiprocess mode when it is first imported, so this module must not
import it at the top: the master sets the variable first, and the workers import it after the fork.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import MutableMapping, Optional

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("bik_bridge.server")


def prepare(environ: MutableMapping[str, str] = os.environ) -> tuple[str, bool]:
    """The directory to use, and whether we created it (and so remove it on exit)."""
    given = environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        if any(name.endswith(".db") for name in os.listdir(given)):
            # Files of an earlier run would be added to this run's counts.
            log.warning("metrics directory is not empty; empty it before each start", extra={"dir": given})
        return given, False
    # Private to this server: counts of another instance on the host must never mix in.
    path = tempfile.mkdtemp(prefix="bik-bridge-metrics-")
    environ[MULTIPROC_ENV] = path
    return path, True


def mark_dead(pid: int, path: str) -> None:
    """Forget a dead worker's live gauges; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def remove(path: Optional[str]) -> None:
    """Remove a directory `prepare` created."""
    if path:
        shutil.rmtree(path, ignore_errors=True)
