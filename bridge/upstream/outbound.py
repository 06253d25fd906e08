"""A request to a platform as plain data: what adapters build, what dry-run prints, what upstream sends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MASK = "********"


@dataclass(frozen=True)
class OutboundRequest:
    """One HTTP request to a platform, before it is sent."""

    method: str
    url: str
    operation: str  # a short name for logs and metrics: "create", "get_order", ...
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    params: dict[str, str] | None = None
    secret_headers: frozenset[str] = frozenset()

    def masked(self) -> dict:
        """The request as JSON-ready data with credentials masked."""
        secret = {h.lower() for h in self.secret_headers}
        headers = {k: (MASK if k.lower() in secret else v) for k, v in self.headers.items()}
        shown: dict[str, Any] = {"method": self.method, "url": self.url, "headers": headers}
        if self.params:
            shown["params"] = self.params
        if self.json is not None:
            shown["json"] = self.json
        return shown
