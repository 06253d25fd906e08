"""Serving the app under gunicorn in production form, from the CLI or the container."""
from __future__ import annotations

import errno
import gc
import json
import logging
import os
import socket
from typing import Mapping, Optional

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from bridge.config import Config
from bridge.core.errors import ConfigError
from bridge.http.start_gate import StartGate
from bridge.ops import multiproc
from bridge.ops.logs import configure_logging

log = logging.getLogger("bik_bridge.server")

# Settings a container sets from its environment; the config file's values apply otherwise.
SERVER_ENV = {"host": "BIK_BRIDGE_HOST", "port": "BIK_BRIDGE_PORT", "workers": "BIK_BRIDGE_WORKERS",
              "worker_connections": "BIK_BRIDGE_WORKER_CONNECTIONS"}


def server_env_overrides(environ: Mapping[str, str] = os.environ) -> dict:
    """`server` settings given as BIK_BRIDGE_HOST, _PORT, _WORKERS and _WORKER_CONNECTIONS."""
    if environ.get("BIK_BRIDGE_THREADS", "").strip():
        raise ConfigError("BIK_BRIDGE_THREADS is gone: each worker serves its connections as greenlets; set "
                          "BIK_BRIDGE_WORKER_CONNECTIONS instead")
    overrides: dict = {}
    for key, name in SERVER_ENV.items():
        value = environ.get(name, "").strip()
        if not value:
            continue
        if key != "host" and not value.isdigit():
            raise ConfigError(f"{name}={value!r} is not a whole number")
        overrides[key] = value if key == "host" else int(value)
    return overrides


def listen_problem(host: str, port: int) -> Optional[str]:
    """Why the server could not listen on host:port, or None; gunicorn would only retry and say it cannot connect."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            hint = (": another process listens there; stop it, or set server.port (BIK_BRIDGE_PORT)"
                    if exc.errno == errno.EADDRINUSE else f": {exc.strerror or exc}")
            return f"cannot listen on {host}:{port}{hint}"
    return None


def gunicorn_options(config: Config) -> dict:
    """gunicorn settings derived from the config: a greenlet per connection, a timeout above every budget."""
    s = config.server
    slowest = config.upstream.total_timeout_seconds * 2 + config.idempotency.wait_seconds
    return {
        "bind": f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}",
        "workers": s.workers,
        # A connection that waits, on its client or on the store, holds a greenlet instead of one of a few
        # threads: slow clients cannot take every slot (bridge/http/worker.py adds the read deadline).
        "worker_class": "bridge.http.worker.BridgeWorker",
        "worker_connections": s.worker_connections,
        "timeout": int(slowest + 15),
        "graceful_timeout": int(slowest + 5),
        "keepalive": 75,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": config.logging.level.lower(),
        "proc_name": "bik-bridge",
        # Heartbeat files on tmpfs: a slow disk must not make gunicorn think workers hung.
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "forwarded_allow_ips": "127.0.0.1,::1",
    }


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error answer for requests it cannot parse, as the bridge's JSON error body."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


class BridgeLogger(GunicornLogger):
    """gunicorn's own messages in the bridge's log format, on the bridge's one handler."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        ours = logging.getLogger("bik_bridge").handlers
        if ours:
            self.error_log.handlers[:] = list(ours)
            self.error_log.propagate = False


class BridgeServer(BaseApplication):
    """gunicorn running the app the composition root builds inside each worker, after the fork."""

    def __init__(self, config: Config, metrics_dir: Optional[str] = None):
        self.config_model = config
        self.metrics_dir = metrics_dir
        self.first_worker = False
        # Made by the master before it forks, passed by every worker it starts.
        self.start_gate = StartGate(gunicorn_options(config)["worker_tmp_dir"])
        self.placer = None  # this worker's overflow placer, when `placement: overflow`
        self.worker = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.config_model).items():
            self.cfg.set(key, value)
        self.cfg.set("logger_class", BridgeLogger)
        if "control_socket_disable" in self.cfg.settings:
            # Several instances on one host would fight over gunicorn's one default control socket path.
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("post_fork", self._post_fork)
        self.cfg.set("child_exit", self._child_exit)
        self.cfg.set("on_exit", self._on_exit)
        self.cfg.set("worker_exit", self._worker_exit)

    def _post_fork(self, server, worker) -> None:
        configure_logging(self.config_model.logging.format, self.config_model.logging.level)
        worker.read_timeout = self.config_model.server.read_timeout_seconds
        # The start-up warnings are the first worker's to give: the master must not import the platform
        # clients, which gevent can only make cooperative when it patches before they are imported.
        self.first_worker = worker.age == 1
        self.worker = worker
        # gunicorn answers malformed HTTP itself, before the app; in this worker it answers in JSON too.
        gunicorn_util.write_error = write_json_error

    def _child_exit(self, server, worker) -> None:
        if self.metrics_dir:
            multiproc.mark_dead(worker.pid, self.metrics_dir)

    def _worker_exit(self, server, worker) -> None:
        if self.placer is not None:
            # The draft in hand is finished (its create answered or given up) before the worker goes.
            self.placer.stop(timeout=self.config_model.lease_seconds() + 5)

    def _on_exit(self, server) -> None:
        self.start_gate.close()

    def load(self):
        # Imported here so connections and sessions are made per worker, never shared across a fork.
        from bridge.bootstrap import PLACER, build_app, durability_warnings
        from bridge.http.app import EXTENSION

        app = build_app(self.config_model)
        service = app.extensions[EXTENSION]
        with self.start_gate.passing() as first_start:
            # While no worker of this instance serves, none can have a create on its way, and this one may vouch
            # for the store (`warm_up`'s first_start). Checked, warmed up and marked in one pass, so that no
            # sibling starts serving in between: a worker slower to start, or one replacing a dead one, does not.
            service.warm_up(first_start=first_start)
        if self.first_worker:
            # Asked of the worker's own store: the warnings cost no connection of their own.
            for warning in durability_warnings(self.config_model, service.store):
                log.warning(warning)
        # What the worker has built so far lives as long as the worker. Frozen, it is out of the cyclic
        # collector's sight: a full collection scans only what requests leave behind, instead of pausing the
        # whole worker for 20-40 ms (docs/performance.md).
        gc.collect()
        gc.freeze()
        log.info("worker ready", extra={"pid": os.getpid(), "platform": self.config_model.platform})
        # Every worker runs one; the placer lease in the idempotency store lets one of them place at a time.
        self.placer = app.extensions.get(PLACER)
        if self.placer is not None:
            # A worker told to stop places no further draft: it finishes the one in hand while it drains.
            worker = self.worker
            self.placer.start(alive=(lambda: worker.alive) if worker is not None else None)
        return app


def serve(config: Config) -> None:
    """Run until stopped."""
    configure_logging(config.logging.format, config.logging.level)
    if config.auth.scheme == "none" or any(a.scheme == "none" for a in config.auth_overrides.values()):
        log.warning("auth scheme is none: anyone who can reach this port can place orders")
    metrics_dir, owns_metrics_dir = multiproc.prepare() if config.metrics.enabled else (None, False)
    metrics_token = config.metrics.token.get_secret_value() if config.metrics.token else ""
    if metrics_dir and not metrics_token and not config.server.is_loopback():
        log.warning("GET /metrics is open to anyone who can reach this port; set metrics.token")
    log.info("starting", extra={"platform": config.platform, "bind": gunicorn_options(config)["bind"],
                                "workers": config.server.workers, "idempotency": config.idempotency.backend,
                                "metrics_dir": metrics_dir})
    master = os.getpid()
    try:
        BridgeServer(config, metrics_dir).run()
    finally:
        # Reached however the master stops (a signal, or a bind that failed, where gunicorn skips its on_exit hook).
        # A worker's exit unwinds through here too, in its own process: the directory is the master's to remove.
        if owns_metrics_dir and os.getpid() == master:
            multiproc.remove(metrics_dir)
