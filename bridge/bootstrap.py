"""The composition root: the one place that turns a config into live adapters, stores and a service."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import requests
from requests.adapters import HTTPAdapter

from bridge.config import Config
from bridge.ports import IdempotencyStore, PlatformAdapter
from bridge.presentation import Presentation
from bridge.service import OrderService, ServiceSettings
from bridge.upstream import Upstream


def build_session(pool_size: int) -> requests.Session:
    """One pooled keep-alive session per process; retries are ours, never urllib3's."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "bik-bridge/0.1"
    return session


def _bigcommerce(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.bigcommerce.adapter import BigCommerceAdapter, BigCommerceRateLimit, error_message

    upstream = Upstream(build_session(config.upstream.pool_size), config.upstream, platform="bigcommerce",
                        rate_headers=BigCommerceRateLimit(), message_of=error_message, observer=observer)
    pool = ThreadPoolExecutor(max_workers=max(4, config.upstream.pool_size), thread_name_prefix="bigcommerce")
    return BigCommerceAdapter(config.bigcommerce, presentation, upstream, pool)


def _bitbybit(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.bitbybit.adapter import build_bitbybit_adapter

    return build_bitbybit_adapter(config, presentation, build_session(config.upstream.pool_size), observer)


def _local(config: Config, presentation: Presentation, observer) -> PlatformAdapter:
    from adapters.local.adapter import LocalAdapter

    return LocalAdapter(config.local.db_path, presentation)


ADAPTERS: dict[str, Callable[[Config, Presentation, Optional[Callable]], PlatformAdapter]] = {
    "bigcommerce": _bigcommerce,
    "bitbybit": _bitbybit,
    "local": _local,
}


def build_adapter(config: Config, platform: Optional[str] = None, observer: Optional[Callable] = None) -> PlatformAdapter:
    """The platform adapter the config names (or `platform`, for dry-run)."""
    return ADAPTERS[platform or config.platform](config, Presentation.from_config(config.store), observer)


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
    )


def build_service(config: Config, *, adapter: Optional[PlatformAdapter] = None,
                  store: Optional[IdempotencyStore] = None, observer: Optional[Callable] = None) -> OrderService:
    """Wire the service for one config; tests pass fakes for `adapter` and `store`."""
    return OrderService(adapter or build_adapter(config, observer=observer), store or build_store(config),
                        service_settings(config))
