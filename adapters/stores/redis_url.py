"""A Redis client from a URL: everything redis-py's `from_url` reads, plus Redis Sentinel and Redis Cluster.

    redis://[[user]:password@]host[:port][/db]            one server (or a managed primary endpoint)
    rediss://...                                          the same over TLS
    unix://[[user]:password@]/path/to/socket[?db=N]       a local socket
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?sentinel_password=P]
    rediss+sentinel://...                                 the same, TLS to the primary
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]   a Redis Cluster, from any of its nodes
    rediss+cluster://...                                  the same over TLS

With Sentinel the client asks the sentinels for the primary of `service` and follows a failover.
The credentials in the URL are the primary's; sentinels that need a password of their own take
`sentinel_password`. With Cluster the client learns the slot map from the nodes given and routes each
command to the primary of its key's slot; every script of the stores names keys of one slot.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel, SentinelManagedSSLConnection

SENTINEL_PORT = 26379
REDIS_PORT = 6379
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}


def redis_client(url: str, **options: Any) -> redis.Redis | RedisCluster:
    """A client for `url`; `options` (timeouts, retry, ...) apply to connections to the primary (or primaries)."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return _cluster_client(parts, options)
    if parts.scheme in SENTINEL_SCHEMES:
        return _sentinel_client(parts, options)
    return redis.Redis.from_url(url, **options)


def _sentinel_client(parts: SplitResult, options: dict) -> redis.Redis:
    hosts = _addresses(parts, SENTINEL_PORT)
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not hosts or not path:
        raise ValueError("a Sentinel URL needs redis+sentinel://host[:port][,host[:port]...]/service[/db]")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel URL's path is /service or /service/db")
    query = parse_qs(parts.query)
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"][0]
    primary = dict(options, db=int(path[1]) if len(path) == 2 else 0, **_credentials(parts))
    if SENTINEL_SCHEMES[parts.scheme]:
        primary["connection_class"] = SentinelManagedSSLConnection
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_options)
    return sentinel.master_for(path[0], **primary)


def _cluster_client(parts: SplitResult, options: dict) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in _addresses(parts, REDIS_PORT)]
    if not nodes or parts.path.strip("/"):
        raise ValueError("a Cluster URL is redis+cluster://host[:port][,host[:port]...] "
                         "(a cluster has database 0 only)")
    cluster = dict(options, **_credentials(parts))
    cluster.pop("health_check_interval", None)  # per-node connections of a cluster check themselves
    if CLUSTER_SCHEMES[parts.scheme]:
        cluster["ssl"] = True
    return RedisCluster(startup_nodes=nodes, **cluster)


def _credentials(parts: SplitResult) -> dict[str, str]:
    """The URL's user name and password: the data nodes' (a sentinel's own password is `sentinel_password`)."""
    given = {"username": parts.username, "password": parts.password}
    return {name: unquote(value) for name, value in given.items() if value}


def _addresses(parts: SplitResult, default_port: int) -> list[tuple[str, int]]:
    """The comma-separated host[:port] list after the URL's credentials."""
    return [_host_port(item, default_port) for item in parts.netloc.rpartition("@")[2].split(",") if item]


def is_cluster(client: Any) -> bool:
    """Whether `client` routes commands by slot, so that a pipeline cannot carry SCRIPT LOAD."""
    return isinstance(client, RedisCluster)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = item.partition(":")
    if port and not port.isdigit():
        raise ValueError(f"a Redis URL has a bad address {item!r}")
    return host, int(port) if port else default_port
