"""Storage per OS thread, also in a gevent worker, where `threading.local` is per greenlet."""
from __future__ import annotations

import sys
import threading


def os_thread_local() -> threading.local:
    """A `threading.local` of the OS thread: the greenlets of a gevent worker share it, as they share the thread."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return monkey.get_original("threading", "local")()
    return threading.local()
