"""What `serve` takes from the environment: server settings and the metrics directory."""
from __future__ import annotations

import gc
import os

import pytest

from bridge.config import CONFIG_ENV
from bridge.http.server import server_env_overrides
from bridge.ops import multiproc
from bridge.ops.cli import EXIT_FAILED, EXIT_USAGE, main


def test_server_settings_come_from_the_environment():
    env = {"BIK_BRIDGE_HOST": "0.0.0.0", "BIK_BRIDGE_PORT": "9000", "BIK_BRIDGE_WORKERS": "4",
           "BIK_BRIDGE_WORKER_CONNECTIONS": "500"}

    assert server_env_overrides(env) == {"host": "0.0.0.0", "port": 9000, "workers": 4, "worker_connections": 500}
    assert server_env_overrides({"BIK_BRIDGE_PORT": ""}) == {}


def test_the_old_thread_count_is_refused_with_what_replaced_it(monkeypatch, capsys):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("BIK_BRIDGE_THREADS", "16")

    assert main(["serve"]) == EXIT_USAGE
    assert "BIK_BRIDGE_WORKER_CONNECTIONS" in capsys.readouterr().err


def test_a_bad_number_stops_serve_before_it_starts(monkeypatch, capsys):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("BIK_BRIDGE_WORKERS", "two")

    assert main(["serve"]) == EXIT_USAGE
    assert "BIK_BRIDGE_WORKERS='two' is not a whole number" in capsys.readouterr().err


def test_a_port_another_process_listens_on_stops_serve_with_what_to_do(monkeypatch, capsys):
    """gunicorn would retry for five seconds and say only that it cannot connect."""
    import socket

    from bridge.http import server

    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setattr(server, "serve", lambda config: pytest.fail("serve started on a port in use"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        assert main(["serve", "--port", str(port)]) == EXIT_FAILED

    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}: another process listens there" in err and "BIK_BRIDGE_PORT" in err


def test_the_server_makes_a_private_metrics_directory_when_none_is_given():
    env: dict = {}
    path, created = multiproc.prepare(env)
    try:
        assert created and env[multiproc.MULTIPROC_ENV] == path
        assert os.stat(path).st_mode & 0o077 == 0  # readable by this user only
    finally:
        multiproc.remove(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("exits_in", ["master", "worker"])
def test_the_private_metrics_directory_goes_when_the_master_stops_however_it_stops(tmp_path, monkeypatch, exits_in):
    """gunicorn leaves without its on_exit hook when it cannot bind; a worker's exit unwinds through serve too,
    and must leave the directory its siblings still write to."""
    from bridge.bootstrap import parse_config
    from bridge.http import server

    monkeypatch.delenv(multiproc.MULTIPROC_ENV, raising=False)
    made: list[str] = []
    real_pid = os.getpid()

    def run(self):
        made.append(self.metrics_dir)
        if exits_in == "worker":
            monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # as in a forked worker
        raise SystemExit(1)  # what gunicorn does after its bind retries

    monkeypatch.setattr(server.BridgeServer, "run", run)
    monkeypatch.setattr(server, "configure_logging", lambda *args, **kwargs: None)
    config = parse_config({"local": {"db_path": str(tmp_path / "orders.db")},
                           "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db")}}, environ={})
    with pytest.raises(SystemExit):
        server.serve(config)
    monkeypatch.undo()
    try:
        assert os.path.exists(made[0]) == (exits_in == "worker")
    finally:
        multiproc.remove(made[0])


def test_a_given_metrics_directory_is_used_and_kept(tmp_path, caplog):
    (tmp_path / "counter_1.db").write_bytes(b"")
    env = {multiproc.MULTIPROC_ENV: str(tmp_path)}

    with caplog.at_level("WARNING", logger="bik_bridge.server"):
        path, created = multiproc.prepare(env)

    assert (path, created) == (str(tmp_path), False)
    assert "not empty" in caplog.text


@pytest.mark.parametrize("given", [None, ""])
def test_an_empty_variable_counts_as_unset(given):
    env = {} if given is None else {multiproc.MULTIPROC_ENV: given}
    path, created = multiproc.prepare(env)
    multiproc.remove(path)
    assert created


def test_a_worker_freezes_what_it_built_so_full_collections_skip_it(tmp_path):
    """The app a worker builds is moved out of the cyclic collector's sight once built."""
    from bridge.bootstrap import parse_config
    from bridge.http.server import BridgeServer

    config = parse_config({"local": {"db_path": str(tmp_path / "orders.db")}, "metrics": {"enabled": False},
                           "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db")}}, environ={})
    gc.unfreeze()
    server = BridgeServer(config)
    try:
        app = server.load()
        assert gc.get_freeze_count() > 0
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
        server.start_gate.close()


@pytest.mark.parametrize("age", [1, 2, 3, 7])
def test_only_a_worker_starting_before_any_sibling_serves_vouches_for_the_store(tmp_path, monkeypatch, age):
    """The first worker to warm up vouches that no create of this bridge can be on its way; every worker after it
    (a sibling slower to start, whatever its number, or one replacing a dead one) must not, since one may serve."""
    from gunicorn import util as gunicorn_util

    from bridge.bootstrap import parse_config
    from bridge.core.service import OrderService
    from bridge.http.server import BridgeServer

    config = parse_config({"local": {"db_path": str(tmp_path / "orders.db")}, "metrics": {"enabled": False},
                           "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db")}}, environ={})
    told: list[bool] = []
    monkeypatch.setattr(OrderService, "warm_up", lambda self, first_start=True: told.append(first_start))
    # What else the hook does to the process (its logging, gunicorn's error page) is undone after the test.
    monkeypatch.setattr("bridge.http.server.configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(gunicorn_util, "write_error", gunicorn_util.write_error)
    server = BridgeServer(config)  # the master: its gate is what the workers it forks pass through
    try:
        for worker_age in (age, age + 1):  # two workers of the instance, the second loading after the first
            server._post_fork(None, type("Worker", (), {"age": worker_age})())
            server.load()
    finally:
        gc.unfreeze()
        server.start_gate.close()
    assert told == [True, False]
