"""The composition root: the registry of platforms, and the one place that builds every live object of a process."""
from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from bridge import config as configuration
from bridge.config import Config
from bridge.core.platform import AdapterParts, Platform

if TYPE_CHECKING:  # the clients are imported by the functions that build them, in the process that uses them
    import requests
    from flask import Flask

    from bridge.core.freshness import FreshAnswers
    from bridge.core.placer import Placer
    from bridge.core.ports import IdempotencyStore, PlatformAdapter
    from bridge.core.service import OrderService, ServiceSettings
    from bridge.ops.metrics import Metrics
    from bridge.upstream.client import Upstream
    from bridge.upstream.quota import RateGate, RateLimitHeaders

# A platform is one folder under adapters/ whose package holds `PLATFORM`, and one line here: the name that
# `platform:` and its config section use, and that package. Imported when a config is first parsed.
PLATFORMS: Mapping[str, str] = {
    "bigcommerce": "adapters.bigcommerce",
    "bitbybit": "adapters.bitbybit",
    "local": "adapters.local",
}
DEFAULT_PLATFORM = "local"  # what runs without a config file: the whole flow with no store account
PLACER = "bik_bridge_placer"  # the app's extension holding the overflow placer, when `placement: overflow`


# The config ---------------------------------------------------------------------------------------------------------

def platforms(registry: Mapping[str, str] = PLATFORMS) -> dict[str, Platform]:
    """Each registered platform's descriptor, its package imported now."""
    return {name: importlib.import_module(package).PLATFORM for name, package in registry.items()}


@functools.lru_cache(maxsize=None)
def _config_class(registry: tuple[tuple[str, str], ...]) -> type[Config]:
    return configuration.config_model(platforms(dict(registry)), DEFAULT_PLATFORM)


def config_class(registry: Mapping[str, str] = PLATFORMS) -> type[Config]:
    """The Config model of a registry: one class per registry, so configs of one registry compare equal."""
    return _config_class(tuple(registry.items()))


def parse_config(raw: Any, environ: Optional[dict[str, str]] = None, base_dir: str | Path | None = None, *,
                 registry: Mapping[str, str] = PLATFORMS) -> Config:
    """A parsed YAML tree validated against the registered platforms (see `bridge.config.parse_config`)."""
    return configuration.parse_config(raw, environ, base_dir, model=config_class(registry))


def load_config(path: Optional[str] = None, environ: Optional[dict[str, str]] = None, *,
                registry: Mapping[str, str] = PLATFORMS) -> Config:
    """The config file validated against the registered platforms (see `bridge.config.load_config`)."""
    return configuration.load_config(path, environ, model=config_class(registry))


# The platform -------------------------------------------------------------------------------------------------------

def build_session(pool_size: int, base_url: Optional[str] = None) -> "requests.Session":
    """One pooled keep-alive session per process; retries are ours, never urllib3's."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "bik-bridge/0.1"
    if base_url:
        # Proxy and CA settings are read once for the one platform host: left to requests, every call
        # walks os.environ again, which was a third of its cost per call (docs/performance.md).
        session.proxies.update(requests.utils.get_environ_proxies(base_url))
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
    return session


def build_rate_gate(config: Config, headers: "RateLimitHeaders") -> "RateGate":
    """The platform's quota as the bridge tracks it, shared through Redis when the idempotency store is Redis."""
    from bridge.upstream.quota import RateGate

    # The quota belongs to the store (or the API key), not to a process: with Redis every worker and instance
    # holds back together.
    if config.idempotency.backend != "redis":
        return RateGate(headers)
    from adapters.stores.redis_quota import RedisQuota

    quota = RedisQuota.from_url(config.idempotency.redis_url.get_secret_value(),
                                f"{config.idempotency_namespace()}|ratelimit")
    return RateGate(headers, state=quota)


def _readers(config: Config) -> int:
    return max(4, config.upstream.pool_size)


def build_upstream(config: Config, name: str, platform: Platform, settings: Any,
                   observer: Optional[Callable] = None, on_gate: Optional[Callable] = None) -> "Upstream":
    """The platform's one pooled session behind `Upstream.send`, with its quota gate (handed to `on_gate`)."""
    from bridge.upstream.client import Upstream

    http = platform.http
    connections = config.upstream.pool_size
    if http.parallel_reads:
        # Each request in flight and each parallel reader may hold a connection at once; with a smaller pool, every
        # request over it opens a connection and drops it afterwards. urllib3 opens them only when they are needed.
        connections = max(connections, config.server.worker_connections + _readers(config))
    headers = http.rate_limit(settings)
    gate = build_rate_gate(config, headers)
    if on_gate is not None:
        on_gate(gate)  # the metrics read the quota's use from its send log
    return Upstream(build_session(connections, http.base_url(settings)), config.upstream, platform=name,
                    rate_headers=headers, message_of=http.error_message, observer=observer, gate=gate)


def build_adapter(config: Config, platform: Optional[str] = None,
                  observer: Optional[Callable] = None, on_gate: Optional[Callable] = None) -> "PlatformAdapter":
    """The adapter of the platform the config names (or of `platform`), with all it needs built."""
    from bridge.core.errors import ConfigError
    from bridge.core.presentation import Presentation

    name = platform or config.platform
    descriptor = config.platforms[name]
    settings = config.platform_settings(name)
    if settings is None:
        raise ConfigError(f"platform is {name} but the {name} section is missing")
    upstream = pool = None
    if descriptor.http is not None:
        upstream = build_upstream(config, name, descriptor, settings, observer, on_gate)
        if descriptor.http.parallel_reads:
            from bridge.ops.context import ContextThreadPool

            # Parallel reads run in the request's context, so their log lines keep its request id.
            pool = ContextThreadPool(max_workers=_readers(config), thread_name_prefix=name)
    presentation = Presentation.from_config(config.store, descriptor.default_name_format)
    return descriptor.adapter(AdapterParts(settings, presentation, upstream, pool))


# The idempotency store, the service, the metrics and the app ---------------------------------------------------------

def build_store(config: Config) -> "IdempotencyStore":
    """The idempotency store the config names."""
    namespace, ttl = config.idempotency_namespace(), config.idempotency.ttl_seconds
    if config.idempotency.backend == "redis":
        from adapters.stores.redis_store import RedisIdempotencyStore

        return RedisIdempotencyStore.from_url(config.idempotency.redis_url.get_secret_value(), namespace=namespace,
                                              ttl_seconds=ttl)
    from adapters.stores.sqlite_store import SqliteIdempotencyStore

    return SqliteIdempotencyStore(config.idempotency.sqlite_path, namespace=namespace, ttl_seconds=ttl)


def service_settings(config: Config) -> "ServiceSettings":
    from bridge.core.service import ServiceSettings

    return ServiceSettings(
        lease_seconds=config.lease_seconds(),
        upstream_budget_seconds=config.upstream.total_timeout_seconds,
        wait_seconds=config.idempotency.wait_seconds,
        on_mismatch=config.idempotency.on_mismatch,
        get_order_cache_seconds=config.store.get_order_cache_seconds,
        lookup_before_create=config.idempotency.lookup_before_create,
        placement=config.placement,
        max_queued=config.overflow.max_queued,
        max_queue_age_seconds=config.overflow.max_age_seconds,
    )


def build_freshness(config: Config) -> Optional["FreshAnswers"]:
    """Where getOrder answers are kept when `store.get_order_cache_seconds` is on: Redis when the records are."""
    seconds = config.store.get_order_cache_seconds
    if seconds <= 0:
        return None
    if config.idempotency.backend != "redis":
        from bridge.core.freshness import FreshnessCache

        return FreshnessCache(seconds)
    from adapters.stores.redis_freshness import RedisFreshness

    # Shared by every worker and instance of the store: a status read one of them answered costs the others nothing.
    return RedisFreshness.from_url(config.idempotency.redis_url.get_secret_value(), config.idempotency_namespace(),
                                   seconds)


def build_service(config: Config, *, adapter: Optional["PlatformAdapter"] = None,
                  store: Optional["IdempotencyStore"] = None, observer: Optional[Callable] = None,
                  on_decision: Optional[Callable[[str], None]] = None,
                  on_gate: Optional[Callable] = None) -> "OrderService":
    """Wire the service for one config; tests pass fakes for `adapter` and `store`."""
    from bridge.core.presentation import Presentation
    from bridge.core.service import OrderService

    # The answer to a queued draft is named as the platform's adapter names the orders it places.
    presentation = Presentation.from_config(config.store, config.platforms[config.platform].default_name_format)
    gates: list["RateGate"] = []

    def gate_made(gate: "RateGate") -> None:
        gates.append(gate)  # overflow placement asks it for room before a fresh draft spends any
        if on_gate is not None:
            on_gate(gate)

    adapter = adapter or build_adapter(config, observer=observer, on_gate=gate_made)
    room = quota_room(gates[0]) if gates and config.placement == "overflow" else None
    return OrderService(adapter, store or build_store(config), service_settings(config), on_decision=on_decision,
                        fresh=build_freshness(config), presentation=presentation, room=room)


def build_metrics(config: Config) -> "Metrics":
    """This process's metrics, shared with the other workers when the server made a multiprocess directory."""
    from bridge.ops.metrics import Metrics

    return Metrics.from_environment(config.platform)


def build_app(config: Config, *, adapter: Optional["PlatformAdapter"] = None,
              store: Optional["IdempotencyStore"] = None) -> "Flask":
    """The app with its service and, when enabled, its metrics; tests pass fakes for `adapter` and `store`."""
    from bridge.http.app import create_app

    metrics = build_metrics(config) if config.metrics.enabled else None
    gates: list["RateGate"] = []

    def on_gate(gate: "RateGate") -> None:
        gates.append(gate)  # the placer asks it for room
        if metrics:
            metrics.watch_quota(gate.usage)

    service = build_service(config, adapter=adapter, store=store, observer=metrics.upstream if metrics else None,
                            on_decision=metrics.decision if metrics else None, on_gate=on_gate)
    app = create_app(config, service=service, metrics=metrics)
    if config.placement == "overflow":
        if metrics:
            metrics.watch_queue(service.store.queue_stats)
        # Started by the server in each worker once it is ready (bridge/http/server.py).
        app.extensions[PLACER] = build_placer(config, service, gates[0] if gates else None,
                                              on_decision=metrics.decision if metrics else None)
    return app


def build_placer(config: Config, service: "OrderService", gate: Optional["RateGate"] = None, *,
                 on_decision: Optional[Callable[[str], None]] = None) -> "Placer":
    """The overflow placer over the service's adapter and store, taking room from the quota gate when there is one."""
    from bridge.core.placer import Placer, PlacerSettings

    settings = PlacerSettings(lease_seconds=config.lease_seconds(),
                              upstream_budget_seconds=config.upstream.total_timeout_seconds,
                              lookup_before_create=config.idempotency.lookup_before_create)
    return Placer(service.adapter, service.store, settings, room=quota_room(gate) if gate else None,
                  on_decision=on_decision)


def quota_room(gate: "RateGate") -> Callable[[], Optional[tuple[int, int]]]:
    """The placer's view of the gate: slots free now and the quota, (0, 1) while a spent quota resets."""
    def room() -> Optional[tuple[int, int]]:
        if gate.blocked_for() > 0:
            return 0, 1
        used = gate.usage()
        return None if used is None else (max(0, used.quota - used.sent), used.quota)

    return room


def durability_warnings(config: Config, store: "IdempotencyStore") -> list[str]:
    """What, at start, could make `store` forget a placed draft, and what that would cost."""
    risks = [f"Redis: {risk}" for risk in store.durability_risks()] if config.idempotency.backend == "redis" else []
    lookup = config.idempotency.lookup_before_create
    consequence = ("each lost draft is looked up on the platform before any create, so it costs a read, not a "
                   "second order" if lookup else "a retry of a lost draft creates a SECOND order")
    warnings = [f"{risk}; {consequence}" for risk in risks]
    if not lookup:
        warnings.append("idempotency.lookup_before_create is false: a record lost to a Redis restart without "
                        "persistence, an eviction, a failover or a SQLite file on an ephemeral disk makes the next "
                        "retry of that draft a second order")
    return warnings
