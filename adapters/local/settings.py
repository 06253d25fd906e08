"""The `local:` config section: where the local platform keeps its orders."""
from __future__ import annotations

import os

from bridge.config import Section


class LocalConfig(Section):
    db_path: str = "./bik-bridge.db"


def store_scope(settings: LocalConfig) -> str:
    """The orders file's absolute path: each file is its own store."""
    return os.path.abspath(settings.db_path)
