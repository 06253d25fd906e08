"""The composition root: the one place that turns a config into live adapters, stores and a service."""
from __future__ import annotations

import os
from typing import Callable, Optional

import requests
from requests.adapters import HTTPAdapter

from bridge.config import Config
from bridge.core.ports import IdempotencyStore, PlatformAdapter
from bridge.core.presentation import Presentation
from bridge.core.service import OrderService, ServiceSettings
from bridge.ops.context import ContextThreadPool
from bridge.upstream.client import Upstream
from bridge.upstream.quota import RateGate, RateLimitHeaders


def build_session(pool_size: int, base_url: Optional[str] = None) -> requests.Session:
    """One pooled keep-alive session per process; retries are ours, never urllib3's."""
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


def build_rate_gate(config: Config, headers: RateLimitHeaders) -> RateGate:
    """The platform's quota as the bridge tracks it, shared through Redis when the idempotency store is Redis."""
    # The quota belongs to the store, not to a process: with Redis every worker and instance holds back together.
    if config.idempotency.backend != "redis":
        return RateGate(headers)
    from adapters.stores.redis_quota import RedisQuota

    quota = RedisQuota.from_url(config.idempotency.redis_url.get_secret_value(),
                                f"{config.idempotency_namespace()}|ratelimit")
    return RateGate(headers, state=quota)


def _bigcommerce(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.bigcommerce.adapter import BigCommerceAdapter, BigCommerceRateLimit, error_message

    readers = max(4, config.upstream.pool_size)
    # Each request in flight and each parallel reader may hold a connection at once; with a smaller pool, every
    # request over it opens a connection and drops it afterwards. urllib3 opens them only when they are needed.
    connections = max(config.upstream.pool_size, config.server.worker_connections + readers)
    session = build_session(connections, config.bigcommerce.api_base_url)
    upstream = Upstream(session, config.upstream, platform="bigcommerce",
                        rate_headers=BigCommerceRateLimit(), message_of=error_message, observer=observer,
                        gate=build_rate_gate(config, BigCommerceRateLimit()))
    # Parallel reads run in the request's context, so their log lines keep its request id.
    pool = ContextThreadPool(max_workers=readers, thread_name_prefix="bigcommerce")
    return BigCommerceAdapter(config.bigcommerce, presentation, upstream, pool)


def _bitbybit(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.bitbybit.adapter import BitbybitRateLimit, build_bitbybit_adapter

    # bitbybit's quota is per API key: every worker and instance using the key shares it through the gate.
    session = build_session(config.upstream.pool_size, config.bitbybit.api_base_url)
    headers = BitbybitRateLimit(config.bitbybit.rate_limit_window_seconds)
    return build_bitbybit_adapter(config, presentation, session, observer, gate=build_rate_gate(config, headers))


def _local(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.local.adapter import LocalAdapter

    return LocalAdapter(config.local.db_path, presentation)


ADAPTERS: dict[str, Callable[[Config, Presentation, Optional[Callable]], PlatformAdapter]] = {
    "bigcommerce": _bigcommerce,
    "bitbybit": _bitbybit,
    "local": _local,
}


def build_adapter(config: Config, platform: Optional[str] = None,
                  observer: Optional[Callable] = None) -> PlatformAdapter:
    """The platform adapter the config names (or `platform`, for dry-run)."""
    return ADAPTERS[platform or config.platform](config, Presentation.from_config(config.store), observer)


def durability_warnings(config: Config) -> list[str]:
    """What, at start, could make the idempotency records forget a placed draft, and what that would cost."""
    risks = []
    if config.idempotency.backend == "redis":
        store = build_store(config)
        try:
            risks = [f"Redis: {risk}" for risk in store.durability_risks()]
        finally:
            store.close()
    lookup = config.idempotency.lookup_before_create
    consequence = ("each lost draft is looked up on the platform before any create, so it costs a read, not a "
                   "second order" if lookup else "a retry of a lost draft creates a SECOND order")
    warnings = [f"{risk}; {consequence}" for risk in risks]
    if not lookup:
        warnings.append("idempotency.lookup_before_create is false: a record lost to a Redis restart without "
                        "persistence, an eviction, a failover or a SQLite file on an ephemeral disk makes the next "
                        "retry of that draft a second order")
    return warnings


def build_store(config: Config) -> IdempotencyStore:
    """The idempotency store the config names."""
    namespace, ttl = config.idempotency_namespace(), config.idempotency.ttl_seconds
    if config.idempotency.backend == "redis":
        from adapters.stores.redis_store import RedisIdempotencyStore

        return RedisIdempotencyStore.from_url(config.idempotency.redis_url.get_secret_value(), namespace=namespace,
                                              ttl_seconds=ttl)
    from adapters.stores.sqlite_store import SqliteIdempotencyStore

    return SqliteIdempotencyStore(config.idempotency.sqlite_path, namespace=namespace, ttl_seconds=ttl)


def service_settings(config: Config) -> ServiceSettings:
    return ServiceSettings(
        lease_seconds=config.lease_seconds(),
        upstream_budget_seconds=config.upstream.total_timeout_seconds,
        wait_seconds=config.idempotency.wait_seconds,
        on_mismatch=config.idempotency.on_mismatch,
        get_order_cache_seconds=config.store.get_order_cache_seconds,
        lookup_before_create=config.idempotency.lookup_before_create,
    )


def build_service(config: Config, *, adapter: Optional[PlatformAdapter] = None,
                  store: Optional[IdempotencyStore] = None, observer: Optional[Callable] = None,
                  on_decision: Optional[Callable[[str], None]] = None) -> OrderService:
    """Wire the service for one config; tests pass fakes for `adapter` and `store`."""
    return OrderService(adapter or build_adapter(config, observer=observer), store or build_store(config),
                        service_settings(config), on_decision=on_decision)


def build_metrics(config: Config):
    """This process's metrics, shared with the other workers when the server made a multiprocess directory."""
    from bridge.ops.metrics import Metrics

    return Metrics.from_environment(config.platform)
