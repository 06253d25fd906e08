"""The `toy:` config section: a shop name it must be given, and the prefix of its order ids."""
from __future__ import annotations

from pydantic import Field

from bridge.config import Section


class ToySettings(Section):
    shop: str = Field(min_length=1)
    id_prefix: str = "T-"


def store_scope(settings: ToySettings) -> str:
    """The shop's name."""
    return settings.shop
