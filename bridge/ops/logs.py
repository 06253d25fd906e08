"""Structured logs: one JSON object a line (or a readable line on a terminal), customer data masked."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from bridge.ops import context

# Fields that identify a customer; a log line carries only a masked hint of their values.
PERSONAL = frozenset({
    "phone", "phonenumber", "email", "firstname", "lastname", "first_name", "last_name", "address", "address1",
    "address2", "street_1", "street_2", "name", "customer", "zip", "city",
})
SECRET = frozenset({"token", "password", "authorization", "access_token", "api_key", "x-auth-token", "x-api-key"})
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
# Customer data inside free text (a platform's error message quoting the order): emails, +country phones, and, in
# text with spaces, other runs of eight or more digits standing on their own (a phone without its country code),
# but not digits inside an id (nb_1715200000_ab), a decimal or a date.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d[\d -]{6,}\d")
_DIGITS = re.compile(r"(?<![\w.+])(?!\d{4}-\d\d-\d\d(?!\d))\d(?:[ -]?\d){7,}(?![\w.])")  # not a 2026-12-01
_PHONE_SHAPE = re.compile(r"\+?[\d ()-]+")


def mask_value(value: Any) -> str:
    """A hint of the shape with the content masked: '+91********10', '********10', 'b***@example.com', 'A***'."""
    text = str(value)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(text) <= 4:
        return "****"
    if _PHONE_SHAPE.fullmatch(text) and sum(c.isdigit() for c in text) >= 7:
        # A phone keeps its country code and last two digits: enough to tell two customers' numbers apart.
        keep = 3 if text.startswith("+") else 0
        return f"{text[:keep]}{'*' * (len(text) - keep - 2)}{text[-2:]}"
    return f"{text[:1]}***"  # names, addresses, postcodes: a fixed mask, so not even the length shows


def mask_text(text: str) -> str:
    """Free text with any email address or phone number in it masked."""
    # Most strings hold neither sign; skipping their regex scans is a fifth of a log line's cost.
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_value(m.group()), text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask_value(m.group()), text)
    if " " in text and len(text) >= 8:  # free text only: a value alone may be an id (orderId "20241130")
        text = _DIGITS.sub(lambda m: mask_value(m.group()), text)
    return text


def scrub(data: Any) -> Any:
    """A copy of `data` with personal fields and free text masked, and secrets replaced by asterisks."""
    if isinstance(data, str):
        return mask_text(data)
    if isinstance(data, dict):
        clean = {}
        for key, value in data.items():
            lowered = str(key).lower()
            if lowered in SECRET:
                clean[key] = "********"
            elif lowered in PERSONAL and value not in (None, ""):
                clean[key] = scrub(value) if isinstance(value, (dict, list)) else mask_value(value)
            elif isinstance(value, str):
                clean[key] = mask_text(value)
            elif isinstance(value, (dict, list)):
                clean[key] = scrub(value)
            else:
                clean[key] = value  # numbers, booleans, None: nothing to mask (most of a line's values)
        return clean
    if isinstance(data, list):
        return [scrub(v) for v in data]
    return data


def _fields(record: logging.LogRecord) -> dict:
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    request = context.current()
    if request is not None:
        # Every line written while serving a request carries its id, whichever module wrote it.
        fields.setdefault("request_id", request.request_id)
    return scrub(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = json.JSONEncoder(default=str, ensure_ascii=False)
        self._second = (-1, "")  # the last whole second formatted: most lines share it with the line before

    def _timestamp(self, record: logging.LogRecord) -> str:
        second, text = self._second  # one read: another thread may replace it meanwhile
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return self._encoder.encode(entry)


class ConsoleFormatter(logging.Formatter):
    """A readable line for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items())
        message = mask_text(record.getMessage())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {message}"
        line = f"{line}  {fields}" if fields else line
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        return line


def configure_logging(fmt: str = "auto", level: str = "INFO", stream=None) -> None:
    """Route the bridge's and gunicorn's logs through one handler."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    # Neither format shows where a line was logged from, or by which thread or process: not gathering that for
    # every record is the logging HOWTO's "Optimization" advice, and a tenth of a request line's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    for name in ("bik_bridge", "gunicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
