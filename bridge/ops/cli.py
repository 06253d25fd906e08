"""The `bik-bridge` command: serve, dry-run, check-config, reconcile, healthcheck, simulate, local set-status."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import yaml

from bridge.bootstrap import PLATFORMS, build_adapter, load_config
from bridge.config import PLACE_ORDER_TARGET_SECONDS, Config, revise
from bridge.core.errors import (
    BridgeError,
    ConfigError,
    OrderNotFound,
    RequestError,
    UpstreamAuthError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from bridge.ops.logs import configure_logging, mask_text, scrub

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero (a socket cannot wait less)."""
    seconds = _seconds(text)
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not above zero")
    return seconds


def age_seconds(text: str) -> float:
    """An argparse type: an age in seconds, zero or more."""
    seconds = _seconds(text)
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not zero or more")
    return seconds


def web_url(text: str) -> str:
    """An argparse type: an http:// or https:// URL with a host, as a customer's phone can open it."""
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0] or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    # A platform's error can quote the order it refused: its customer's email or phone shows masked, as in the logs.
    print(f"bik-bridge: {mask_text(message)}", file=sys.stderr)
    return code


def _as_served(config: Config, flags: Optional[dict] = None) -> Config:
    """The config as `serve` runs it: server settings from its flags win over the environment's (BIK_BRIDGE_HOST,
    ...), which win over the file's."""
    from bridge.http.server import server_env_overrides

    overrides = {**server_env_overrides(), **{k: v for k, v in (flags or {}).items() if v is not None}}
    return revise(config, {"server": overrides}) if overrides else config


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from bridge.http.server import listen_problem, serve

    config = _as_served(config, {"host": args.host, "port": args.port, "workers": args.workers,
                                 "worker_connections": args.worker_connections})
    problem = listen_problem(config.server.host, config.server.port)
    if problem:
        return _fail(problem, EXIT_FAILED)
    serve(config)
    return EXIT_OK


def _config_for_platform(config: Config, platform: Optional[str]) -> Config:
    if not platform or platform == config.platform:
        return config
    changes: dict = {"platform": platform}
    # Placeholders let dry-run show a platform's requests before the merchant has configured it.
    placeholders = config.platforms[platform].placeholders
    if config.platform_settings(platform) is None and placeholders:
        print(f"bik-bridge: no {platform} section in the config; showing placeholders", file=sys.stderr)
        changes[platform] = dict(placeholders)
    return revise(config, changes)


def cmd_dry_run(args: argparse.Namespace, config: Config) -> int:
    from bridge.core.models import PlaceOrderRequest
    from bridge.http.app import check_currency, parse_json, validate

    try:
        with open(args.payload, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return _fail(f"cannot read {args.payload}: {exc.strerror}")
    try:
        # The checks placeOrder makes, in its order: repeated keys, each field, the store's currency.
        body = parse_json(raw)
        if not isinstance(body, dict):
            return _fail(f"{args.payload} must hold a JSON object")
        request = validate(PlaceOrderRequest, body)
        check_currency(request, config.store.currency)
    except ValueError as exc:
        return _fail(f"{args.payload} is not valid JSON: {exc}")
    except RequestError as exc:
        print(json.dumps(exc.body(), indent=2), file=sys.stderr)
        return EXIT_USAGE
    config = _config_for_platform(config, args.platform)
    adapter = build_adapter(config)
    try:
        planned = adapter.build_create(request)
    except BridgeError as exc:
        return _fail(exc.message)
    # The shape of what would be sent, not the customer it would be sent for: their fields show as masked hints.
    print(json.dumps({"platform": config.platform, "requests": [scrub(r.masked()) for r in planned]}, indent=2,
                     ensure_ascii=False))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    config = _as_served(config)  # what `serve` would run
    # A file the platform's section names (a product map, say) is read as serve would read it.
    config.platforms[config.platform].check_files(config.platform_settings())
    print(yaml.safe_dump(config.masked(), sort_keys=False, allow_unicode=True), end="")
    print(_worst_case_note(config), file=sys.stderr)
    if not args.ping:
        return EXIT_OK
    # Both are asked, so that one run names every reason serve would fail on.
    return max(_ping_store(config), _ping_platform(config))


def _ping_store(config: Config) -> int:
    """Whether a Redis idempotency store answers (a SQLite file is made when the bridge first runs)."""
    if config.idempotency.backend != "redis":
        return EXIT_OK
    from bridge.bootstrap import build_store
    from bridge.config import mask_url

    url = mask_url(config.idempotency.redis_url.get_secret_value())
    store = build_store(config)
    try:
        store.ping()
    except BridgeError as exc:
        return _fail(f"idempotency store ping failed: {exc.message}\n  fix: check that {url} "
                     "(idempotency.redis_url) is reachable from this host and its password is right", EXIT_FAILED)
    finally:
        store.close()
    print(f"idempotency store ok: {url}")
    return EXIT_OK


def _ping_platform(config: Config) -> int:
    """One read-only call to the platform with the configured credentials."""
    from bridge.core.deadline import Deadline

    adapter = build_adapter(config)
    try:
        reached = adapter.check_credentials(Deadline(config.upstream.total_timeout_seconds))
    except UpstreamAuthError as exc:
        return _fail(f"ping failed: {exc.message}\n  fix: {_auth_hint(config, exc.upstream_status, exc.message)}",
                     EXIT_FAILED)
    except (UpstreamUnreachable, UpstreamTimeout) as exc:
        if exc.upstream_status is None:
            # Nothing came back at all (a held-back quota is RateLimited, not this): check the network between.
            base = getattr(getattr(config, config.platform, None), "api_base_url", "the platform")
            return _fail(f"ping failed: {exc.message}\n  fix: this host cannot reach {base}: check "
                         f"{config.platform}.api_base_url, DNS, and that outbound HTTPS is allowed (proxy, firewall)",
                         EXIT_FAILED)
        return _fail(f"ping failed: {exc.message}", EXIT_FAILED)
    except BridgeError as exc:
        return _fail(f"ping failed: {exc.message}", EXIT_FAILED)
    print(f"ping ok: {reached}")
    return EXIT_OK


def _worst_case_note(config: Config) -> str:
    worst = config.place_order_worst_case_seconds()
    note = (f"placeOrder answers within {worst:g} s at worst (the larger of idempotency.wait_seconds and "
            f"upstream.total_timeout_seconds, plus upstream.connect_timeout_seconds)")
    if worst >= PLACE_ORDER_TARGET_SECONDS:
        # Bik does not publish its timeout: past this, a slow answer risks arriving after Bik has given up.
        return f"warning: {note}; keep it under {PLACE_ORDER_TARGET_SECONDS:g} s"
    return note


def _auth_hint(config: Config, status: Optional[int], message: str = "") -> str:
    """What to change when the platform refuses the configured credentials, in the platform's own terms."""
    return config.platforms[config.platform].auth_hint(status, message)


def cmd_healthcheck(args: argparse.Namespace, config: Config) -> int:
    import urllib.request

    from bridge.http.server import server_env_overrides

    server = revise(config, {"server": server_env_overrides()}).server
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(server.host, server.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{server.port}{server.base_path}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except OSError as exc:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
        return _fail(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", EXIT_FAILED)
    print(f"healthy: {url} answered {status}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, config: Config) -> int:
    from bridge.ops.simulate import Credentials, Simulation, endpoint_urls, load_payload

    credentials = Credentials(args.auth_scheme, args.token or os.environ.get("BIK_BRIDGE_TOKEN"), args.header,
                              args.username, args.password or os.environ.get("BIK_BRIDGE_PASSWORD"))
    if credentials.problem():
        return _fail(credentials.problem())
    try:
        payload = load_payload(args.payload)
    except OSError as exc:
        return _fail(f"cannot read {args.payload}: {exc.strerror}")
    except ValueError as exc:
        return _fail(f"{args.payload}: {exc}")
    for url in filter(None, (args.url, args.get_order_url)):
        if not url.lower().startswith(("http://", "https://")):
            return _fail(f"{url} needs its scheme: http://{url} or https://{url}")
    place_url, get_url = endpoint_urls(args.url, args.get_order_url)
    simulation = Simulation(place_url, get_url, credentials, payload, timeout=args.timeout)
    return EXIT_OK if simulation.run() else EXIT_FAILED


def cmd_local_set_status(args: argparse.Namespace, config: Config) -> int:
    if config.platform != "local":
        # Its local section still names a database, one this bridge never places orders in.
        return _fail(f"local set-status moves orders of the local platform; this config's platform is "
                     f"{config.platform}")
    path = config.local.db_path
    if not path.startswith("file:") and path != ":memory:" and not os.path.exists(path):
        # Opening it would make an empty database here, and hide that the orders are somewhere else.
        return _fail(f"order {args.order_id} not found: no local order database at {path} (local.db_path)",
                     EXIT_FAILED)
    adapter = build_adapter(config, platform="local")
    try:
        order = adapter.set_status(args.order_id, args.status, args.payment, args.fulfillment, args.tracking_url)
    except OrderNotFound as exc:
        return _fail(f"{exc.message} in {path} (local.db_path)", EXIT_FAILED)
    except BridgeError as exc:
        return _fail(exc.message, EXIT_FAILED)
    print(json.dumps({"id": order.id, "status": order.status, "paymentStatus": order.paymentStatus,
                      "fulfillmentStatus": order.fulfillmentStatus,
                      "trackingURL": order.deliveryInfo.trackingURL if order.deliveryInfo else None}))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace, config: Config) -> int:
    from bridge.bootstrap import build_metrics, build_service

    # Every decision is logged per draft id (on stderr; stdout keeps the summary for cron mail).
    configure_logging(config.logging.format, config.logging.level)
    # With the server's PROMETHEUS_MULTIPROC_DIR in the environment, this run's counts join its /metrics.
    metrics = build_metrics(config)
    service = build_service(config, observer=metrics.upstream, on_decision=metrics.decision)
    try:
        settled = service.reconcile(args.older_than)
    except BridgeError as exc:
        return _fail(f"reconcile failed: {exc.message}", EXIT_FAILED)
    for key, action, order_id in settled:
        print(f"{key}\t{action}" + (f"\t{order_id}" if order_id else ""))
    counts = {action: sum(1 for _, a, _ in settled if a == action) for _, action, _ in settled}
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing to settle"
    print(f"reconcile: {summary}")
    return reconcile_exit_code([action for _, action, _ in settled])


def reconcile_exit_code(actions: list[str]) -> int:
    """1 when a draft needs someone (its lookup failed or proved nothing), so cron can alert on it; else 0."""
    return EXIT_FAILED if any(action in ("lookup_failed", "inconclusive") for action in actions) else EXIT_OK


# How `queue list` names a queued draft's state: `in_flight` is the placer placing it right now.
QUEUE_STATES = {"queued": "queued", "in_flight": "placing", "unknown": "unknown", "refused": "refused"}
QUEUE_LIST_LIMIT = 10_000


def cmd_queue(args: argparse.Namespace, config: Config) -> int:
    from bridge.bootstrap import build_store
    from bridge.core.overflow import CANCELLED_BY_MERCHANT

    store = build_store(config)
    try:
        if args.queue_command == "list":
            return _queue_list(store, args.json)
        if args.queue_command == "retry":
            if not store.requeue(args.draft_order_id):
                return _fail(f"{args.draft_order_id} is not a refused queued draft; nothing changed", EXIT_FAILED)
            print(f"{args.draft_order_id}\tqueued")
            return EXIT_OK
        if not store.cancel_queued(args.draft_order_id, CANCELLED_BY_MERCHANT):
            # Only a draft nothing was sent for may be cancelled: one being placed may already be an order.
            return _fail(f"{args.draft_order_id} is not waiting in the queue (only state queued can be cancelled); "
                         "nothing changed", EXIT_FAILED)
        print(f"{args.draft_order_id}\trefused\t{CANCELLED_BY_MERCHANT}")
        return EXIT_OK
    except BridgeError as exc:
        return _fail(f"queue {args.queue_command} failed: {exc.message}", EXIT_FAILED)
    finally:
        store.close()


def _queue_list(store, as_json: bool) -> int:
    """Every queued draft not yet placed, oldest first, then the refused ones."""
    stats = store.queue_stats()
    waiting = store.queued(QUEUE_LIST_LIMIT)
    # `queued` leaves out a draft the placer holds right now (a live lease); the count in the last line has it.
    rows = waiting + store.refused(QUEUE_LIST_LIMIT)
    entries = [{"draftOrderId": r.key, "orderId": r.order_id, "state": QUEUE_STATES.get(r.state.value, r.state.value),
                "queuedSeconds": round(max(0.0, stats.now - r.enqueued_at), 1),
                "reason": mask_text(r.reason) if r.reason else r.reason} for r in rows]
    if as_json:
        print(json.dumps(entries, ensure_ascii=False))
        return EXIT_OK
    for entry in entries:
        line = f"{entry['draftOrderId']}\t{entry['state']}\t{entry['orderId']}\t{entry['queuedSeconds']:.0f}s"
        print(line + (f"\t{entry['reason']}" if entry["reason"] else ""))
    refused = sum(1 for entry in entries if entry["state"] == "refused")
    print(f"queue: {stats.depth} waiting, {refused} refused, oldest {stats.oldest_age:.0f}s")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="bik-bridge", description="Bik placeOrder/getOrder for your store.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="YAML config file (default: $BIK_BRIDGE_CONFIG, else built-in defaults)")
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", cmd_serve, "serve placeOrder and getOrder under gunicorn")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--worker-connections", type=int)

    dry = command("dry-run", cmd_dry_run,
                  "print the request(s) a placeOrder payload would send, customer data masked; sends nothing")
    dry.add_argument("payload", help="a placeOrder body as Bik sends it (see examples/)")
    dry.add_argument("--platform", choices=list(PLATFORMS))

    check = command("check-config", cmd_check_config, "validate the config and print it with secrets masked")
    check.add_argument("--ping", action="store_true", help="also make one read-only call to the platform")

    reconcile = command("reconcile", cmd_reconcile,
                        "settle placeOrder records left in flight or unknown; safe to run from cron at any time")
    reconcile.add_argument("--older-than", type=age_seconds, default=60.0, metavar="SECONDS",
                           help="only records untouched for this long (default 60)")

    queue = command("queue", cmd_queue, "list, retry and cancel the drafts placement: overflow queued")
    queue_commands = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    queue_list = queue_commands.add_parser("list", help="queued drafts not yet placed, oldest first, then refused ones")
    queue_list.add_argument("--json", action="store_true", help="one JSON array instead of lines")
    queue_retry = queue_commands.add_parser("retry", help="put a refused draft back in the queue")
    queue_retry.add_argument("draft_order_id")
    queue_cancel = queue_commands.add_parser("cancel", help="refuse a draft still waiting; getOrder answers CANCELLED")
    queue_cancel.add_argument("draft_order_id")
    for sub in (queue_list, queue_retry, queue_cancel):
        # Also after the subcommand; SUPPRESS keeps one given before it.
        sub.add_argument("--config", default=argparse.SUPPRESS, help="YAML config file")

    health = command("healthcheck", cmd_healthcheck, "exit 0 when the server on this host answers /healthz")
    health.add_argument("--timeout", type=positive_seconds, default=3.0, metavar="SECONDS")

    simulate = commands.add_parser(
        "simulate", help="play Bik against a running bridge and check every answer (places one real order)",
        description="Play Bik against a running bridge: placeOrder, the same again, getOrder, an unknown order, "
                    "wrong credentials. Each answer is checked against Bik's contract; exits 1 on any failure.")
    simulate.add_argument("--url", required=True, help="base URL (https://host/bik) or the placeOrder URL")
    simulate.add_argument("--get-order-url", help="the getOrder URL, when it is not next to placeOrder")
    simulate.add_argument("--auth-scheme", choices=["none", "bearer", "api_key", "basic"], default="none")
    simulate.add_argument("--token", help="bearer or api_key token (default: $BIK_BRIDGE_TOKEN)")
    simulate.add_argument("--header", default="X-Api-Key", help="api_key header name (default X-Api-Key)")
    simulate.add_argument("--username")
    simulate.add_argument("--password", help="basic password (default: $BIK_BRIDGE_PASSWORD)")
    simulate.add_argument("--payload", help="placeOrder body to send (default: Bik's sample order); "
                                            "its draft id is replaced by a fresh one")
    simulate.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                          help="per call (default 30)")
    simulate.set_defaults(handler=cmd_simulate, config=None)

    local = commands.add_parser("local", help="manage orders of the local platform")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    set_status = local_commands.add_parser("set-status", help="move a local order along")
    set_status.add_argument("--config")
    set_status.add_argument("order_id")
    set_status.add_argument("--status", choices=["ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED"])
    set_status.add_argument("--payment", choices=["pending", "paid", "refunded"])
    set_status.add_argument("--fulfillment", choices=["unfulfilled", "partial", "fulfilled"])
    set_status.add_argument("--tracking-url", type=web_url, help="http(s) link the customer is shown")
    set_status.set_defaults(handler=cmd_local_set_status)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(f"invalid config: {exc.message}")
    if args.command != "serve":
        # One-shot commands: warnings as readable, masked lines on stderr, apart from the command's output.
        configure_logging("console", "WARNING", stream=sys.stderr)
    try:
        return args.handler(args, config)
    except ConfigError as exc:
        return _fail(f"invalid config: {exc.message}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
