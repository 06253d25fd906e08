"""The platform session reads proxy and CA settings once, for its one host, and keeps honouring them."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.bootstrap import build_session

STORE = "http://store.example"


@pytest.fixture
def proxy():
    """A forward proxy that answers every request itself and remembers the request lines it saw."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.requestline)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_in_the_environment_carries_the_platform_calls(monkeypatch, proxy):
    url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    session = build_session(2, STORE)
    monkeypatch.delenv("HTTP_PROXY")  # read once: later changes to the environment do not matter

    assert session.get(f"{STORE}/stores/abc/v2/orders/1", timeout=5).status_code == 200
    assert seen == [f"GET {STORE}/stores/abc/v2/orders/1 HTTP/1.1"]
    assert session.trust_env is False


def test_no_proxy_naming_the_platform_host_sends_directly(monkeypatch, proxy):
    url, _ = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "store.example")

    assert not build_session(2, STORE).proxies


def test_a_ca_bundle_in_the_environment_verifies_the_platform(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    assert build_session(2, "https://api.bigcommerce.com").verify == str(bundle)


def test_without_a_platform_host_requests_reads_the_environment_itself():
    assert build_session(2).trust_env is True


def test_the_platform_pool_holds_a_connection_for_every_thread_and_parallel_reader():
    from bridge.bootstrap import build_adapter, parse_config

    config = parse_config({"platform": "bigcommerce", "server": {"worker_connections": 32}, "upstream": {"pool_size": 16},
                           "bigcommerce": {"store_hash": "abc", "access_token": "t", "api_base_url": STORE}},
                          environ={})
    adapter = build_adapter(config)

    # Fewer would make every request beyond them open a connection and drop it afterwards.
    assert adapter.upstream.session.get_adapter(STORE)._pool_maxsize >= 32 + 16
    assert adapter.pool._max_workers == 16
