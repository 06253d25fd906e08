"""What the bridge needs from a store platform: one `Platform` descriptor per folder under adapters/."""
from __future__ import annotations

import importlib
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from pydantic import BaseModel

if TYPE_CHECKING:
    import requests

    from bridge.core.ports import PlatformAdapter
    from bridge.core.presentation import Presentation
    from bridge.upstream.client import Upstream
    from bridge.upstream.quota import RateLimitHeaders


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A callable that imports `module` on its first call: a descriptor then costs no import of its clients."""
    # The gunicorn master parses the config, so it reads every descriptor; the HTTP clients must be imported only
    # in the workers, after gevent has patched the standard library.

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy({module}:{name})"
    return call


def no_files(settings: Any) -> None:
    """The file check of a platform whose settings name no file it reads."""


def no_hint(status: Optional[int], message: str = "") -> str:
    """The hint for a platform that says nothing more about refused credentials."""
    return "check the credentials in the platform's section of the config"


@dataclass(frozen=True)
class Http:
    """What the composition root builds for a platform that talks HTTP: a session, an `Upstream`, a quota gate."""

    base_url: Callable[[Any], str]  # settings -> the one host the session talks to
    rate_limit: Callable[[Any], "RateLimitHeaders"]  # settings -> how the platform announces its quota
    error_message: Callable[["requests.Response"], str]  # the human message of a refusal, for the error tree
    parallel_reads: bool = False  # whether the adapter reads in parallel: the root gives it a thread pool


@dataclass(frozen=True)
class AdapterParts:
    """What the composition root built for one platform's adapter: no adapter opens a session or pool of its own."""

    settings: Any  # the platform's validated config section
    presentation: "Presentation"
    upstream: Optional["Upstream"] = None  # None when the platform talks no HTTP
    pool: Optional[Executor] = None  # the parallel read pool, when `Http.parallel_reads`


@dataclass(frozen=True)
class Platform:
    """A store platform as the bridge sees it: its config section, its adapter and what the core asks of it."""

    settings: type[BaseModel]  # the model of the top-level config section named like the platform
    adapter: Callable[[AdapterParts], "PlatformAdapter"]
    store_scope: Callable[[Any], str]  # settings -> the store's name within the platform, for the idempotency keys
    http: Optional[Http] = None  # None: the platform talks no HTTP
    default_name_format: str = "#{id}"  # how an order is named when `store.name_format` is unset
    path_keys: tuple[str, ...] = ()  # settings that name files, made absolute when the config loads
    placeholders: Mapping[str, str] = field(default_factory=dict)  # settings dry-run shows when the section is absent
    auth_hint: Callable[[Optional[int], str], str] = no_hint  # (status, message) -> what to change when refused
    # settings -> None, or ConfigError naming a file the settings name that the adapter could not use (check-config)
    check_files: Callable[[Any], None] = no_files

    def section_required(self) -> bool:
        """Whether a config naming this platform must carry its section: some setting has no default."""
        return any(f.is_required() for f in self.settings.model_fields.values())
