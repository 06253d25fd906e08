"""Log lines: the request id reaches every line of a request, customer data and secrets never do."""
from __future__ import annotations

import io
import json
import logging

import pytest

from bridge.ops import context
from bridge.ops.logs import ConsoleFormatter, JsonFormatter, configure_logging, mask_text, mask_value, scrub

PHONE, EMAIL = "+919876543210", "buyer@example.com"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured():
    """The bridge's loggers writing JSON into a buffer; restored afterwards."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in ("bik_bridge", "gunicorn.error")}
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    yield stream
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    context.end()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_written_while_serving_a_request_carry_its_id(captured):
    context.begin("req-123")
    logging.getLogger("bik_bridge.anything").info("inside")
    context.end()
    logging.getLogger("bik_bridge.anything").info("outside")

    inside, outside = lines(captured)
    assert inside["request_id"] == "req-123"
    assert "request_id" not in outside


def test_parallel_reads_in_the_context_pool_keep_the_request_id(captured):
    pool = context.ContextThreadPool(max_workers=4)
    request = context.begin("req-pool")
    futures = [pool.submit(lambda n=n: (logging.getLogger("bik_bridge.upstream").info("call %d", n),
                                        context.note_upstream({"n": n}))) for n in range(4)]
    [f.result() for f in futures]
    pool.shutdown()

    assert {line["request_id"] for line in lines(captured)} == {"req-pool"}
    assert sorted(call["n"] for call in request.upstream) == [0, 1, 2, 3]


def test_personal_fields_are_masked_and_secrets_removed(captured):
    logging.getLogger("bik_bridge.x").warning("order", extra={
        "customer": {"firstName": "Asha", "lastName": "Rao", "address1": "12 MG Road", "phoneNumber": PHONE,
                     "email": EMAIL},
        "token": "tok-123456789", "authorization": "Bearer tok-123456789", "draftOrderId": "nb_1715200000_ab",
    })

    raw = captured.getvalue()
    for secret in ("Asha", "Rao", "12 MG Road", PHONE, EMAIL, "tok-123456789"):
        assert secret not in raw
    line = lines(captured)[0]
    assert line["customer"]["email"] == "b***@example.com"
    assert line["customer"]["phoneNumber"] == "+91********10"
    assert line["token"] == line["authorization"] == "********"
    assert line["draftOrderId"] == "nb_1715200000_ab"  # ids stay readable


def test_customer_data_inside_free_text_is_masked(captured):
    logging.getLogger("bik_bridge.x").warning("store said: bad email %s for %s", EMAIL, PHONE,
                                              extra={"error": f"customer {EMAIL} / {PHONE}"})

    raw = captured.getvalue()
    assert EMAIL not in raw and PHONE not in raw
    assert "b***@example.com" in lines(captured)[0]["msg"]


def test_mask_text_leaves_ids_and_numbers_alone():
    text = ("order 1001 draft nb_1715200000_a1b2c3d4 total 947.50 at /stores/abc123/v2/orders on 2026-12-01, "
            "total 123456789.50")
    assert mask_text(text) == text


def test_scrub_masks_nested_lists():
    assert scrub({"items": [{"name": "Skin Renew Cream", "quantity": 2}]}) == {
        "items": [{"name": "S***", "quantity": 2}]}


@pytest.mark.parametrize("value, shown", [
    ("Priya", "P***"), ("Kumar", "K***"), ("Delhi", "D***"), ("560102", "5***"), ("12 MG Road", "1***"),
    ("+919876543210", "+91********10"), ("9876543210", "********10"), ("098765 43210", "**********10"),
    ("buyer@example.com", "b***@example.com"), ("Rao", "****"),
])
def test_a_masked_value_shows_no_more_than_a_hint(value, shown):
    assert mask_value(value) == shown


@pytest.mark.parametrize("text, hidden", [
    ("phone 9876543210 invalid", "9876543210"), ("call 098765 43210 or 98765-43210", "43210"),
    ("customer +91 98765 43210", "98765 43210"),
])
def test_a_phone_without_its_country_code_is_masked_in_free_text(text, hidden):
    assert hidden not in mask_text(text)


@pytest.mark.parametrize("value", ["20241130", "123456789012", "6f1e2d3c4b5a69788796a5b4c3d2e1f0"])
def test_an_id_on_its_own_stays_readable(value):
    """An order or request id may be all digits; only digits inside free text are taken for a phone."""
    assert mask_text(value) == value


@pytest.mark.parametrize("stream, formatter", [(Terminal(), ConsoleFormatter), (io.StringIO(), JsonFormatter)])
def test_auto_format_is_console_on_a_terminal_and_json_otherwise(captured, stream, formatter):
    configure_logging("auto", "INFO", stream)

    assert type(logging.getLogger("bik_bridge").handlers[0].formatter) is formatter


def test_configured_format_wins_over_the_terminal(captured):
    stream = Terminal()
    configure_logging("json", "INFO", stream)
    logging.getLogger("bik_bridge.x").info("hello", extra={"request_id": "r1"})

    assert json.loads(stream.getvalue())["request_id"] == "r1"


def test_console_line_is_readable_and_masked(captured):
    stream = Terminal()
    configure_logging("auto", "INFO", stream)
    context.begin("req-tty")
    logging.getLogger("bik_bridge.http").info("request", extra={"endpoint": "placeOrder", "email": EMAIL})

    line = stream.getvalue()
    assert " INFO    request  " in line
    assert 'endpoint="placeOrder"' in line and 'request_id="req-tty"' in line
    assert EMAIL not in line
