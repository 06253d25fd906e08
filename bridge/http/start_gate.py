"""The one door an instance's workers start through, one at a time, that a worker dying inside cannot jam."""
from __future__ import annotations

import fcntl
import multiprocessing
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional


class StartGate:
    """Made by the master before it forks; every worker it starts passes through once, alone."""

    def __init__(self, directory: Optional[str] = None):
        self._served = multiprocessing.RawValue("b", 0)
        # A POSIX record lock on a file the workers inherit: the kernel drops it when its holder dies, where a
        # semaphore taken by a worker killed mid-start would stay taken and hold every later worker at the door.
        self._file = tempfile.TemporaryFile(prefix="bik-bridge-start-", dir=directory)

    @contextmanager
    def passing(self) -> Iterator[bool]:
        """Hold the gate; yields whether no worker has served yet, and records that one does once the block ends."""
        fcntl.lockf(self._file, fcntl.LOCK_EX)
        try:
            yield self._served.value == 0
            self._served.value = 1
        finally:
            fcntl.lockf(self._file, fcntl.LOCK_UN)

    def close(self) -> None:
        self._file.close()
