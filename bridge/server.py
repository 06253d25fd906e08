"""Serving the app under gunicorn in production form, from the CLI or the container."""
from __future__ import annotations

import logging
import os

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from bridge.config import Config
from bridge.logs import configure_logging

log = logging.getLogger("bik_bridge.server")


def gunicorn_options(config: Config) -> dict:
    """gunicorn settings derived from the config: threads for upstream I/O, a timeout above every budget."""
    s = config.server
    slowest = config.upstream.total_timeout_seconds * 2 + config.idempotency.wait_seconds
    return {
        "bind": f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}",
        "workers": s.workers,
        "worker_class": "gthread",
        "threads": s.threads,
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


class BridgeLogger(GunicornLogger):
    """gunicorn's own messages in the bridge's log format, on the bridge's one handler."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        ours = logging.getLogger("bik_bridge").handlers
        if ours:
            self.error_log.handlers[:] = list(ours)
            self.error_log.propagate = False


class BridgeServer(BaseApplication):
    """gunicorn running `create_app(config)`, built inside each worker after the fork."""

    def __init__(self, config: Config):
        self.config_model = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.config_model).items():
            self.cfg.set(key, value)
        self.cfg.set("logger_class", BridgeLogger)
        if "control_socket_disable" in self.cfg.settings:
            # Several instances on one host would fight over gunicorn's one default control socket path.
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("post_fork", self._post_fork)

    def _post_fork(self, server, worker) -> None:
        configure_logging(self.config_model.logging.format, self.config_model.logging.level)

    def load(self):
        # Imported here so connections and sessions are made per worker, never shared across a fork.
        from bridge.app import create_app

        return create_app(self.config_model)


def serve(config: Config) -> None:
    """Run until stopped."""
    configure_logging(config.logging.format, config.logging.level)
    if config.auth.scheme == "none" or any(a.scheme == "none" for a in config.auth_overrides.values()):
        log.warning("auth scheme is none: anyone who can reach this port can place orders")
    log.info("starting", extra={"platform": config.platform, "bind": gunicorn_options(config)["bind"],
                                "workers": config.server.workers, "idempotency": config.idempotency.backend})
    BridgeServer(config).run()
