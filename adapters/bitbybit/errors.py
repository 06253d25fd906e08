"""Reading bitbybit's error envelope `{"error": {"code", "message"}}`, and what each refusal of the key means."""
from __future__ import annotations

from typing import Optional

import requests

# code -> (what happened, what to change); the codes of bitbybit's errors page.
AUTH_CAUSES: dict[str, tuple[str, str]] = {
    "MISSING_API_KEY": (
        "no API key reached bitbybit",
        "set bitbybit.api_key, and bitbybit.auth_header to the header your bitbybit API expects "
        "(x-api-key; some accounts use x-bitbybit-key)",
    ),
    "INVALID_API_KEY": (
        "the API key is invalid, revoked or expired",
        "create a key in bitbybit Settings > Developer and set bitbybit.api_key (after a rotation the old key "
        "works for 24 hours only); if the key is right, try bitbybit.auth_header x-bitbybit-key, or the other "
        "base URL https://api.bitbybit.studio/customer/api/open/v1",
    ),
    "INSUFFICIENT_SCOPE": (
        "the API key lacks a scope the bridge needs",
        "give the key the orders READ and orders WRITE scopes (bitbybit Settings > Developer)",
    ),
    "IP_NOT_ALLOWED": (
        "this host's IP address is not in the API key's allowlist",
        "add this host's public IP address (or its range in CIDR form) to the key's IP allowlist, "
        "or remove the allowlist",
    ),
}


def error_body(response: requests.Response) -> Optional[dict]:
    """The `error` object of a bitbybit error answer, or None when the body is not bitbybit's envelope."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def error_code(response: requests.Response) -> Optional[str]:
    """bitbybit's error code (`VALIDATION_ERROR`, `NOT_FOUND`, ...), or None."""
    code = (error_body(response) or {}).get("code")
    return str(code) if code else None


def error_message(response: requests.Response) -> str:
    """`CODE: message` from the envelope, plus the cause when the key was refused; else the raw text, short."""
    error = error_body(response)
    if error is None:
        return (response.text or response.reason or "")[:300]
    code, message = str(error.get("code") or ""), str(error.get("message") or "")
    text = f"{code}: {message}" if code and message else (code or message or str(error))
    if code in AUTH_CAUSES:
        text += f" ({AUTH_CAUSES[code][0]})"
    return text[:300]


def auth_code_in(text: str) -> Optional[str]:
    """The bitbybit auth error code a message names, or None."""
    return next((code for code in AUTH_CAUSES if code in text), None)


def auth_hint(status: Optional[int], message: str = "") -> str:
    """What to change when bitbybit refused the key, from the code in `message` or else the status."""
    code = auth_code_in(message)
    if code:
        return AUTH_CAUSES[code][1]
    if status == 401:
        return ("bitbybit.api_key is invalid, revoked or expired, or bitbybit.auth_header is not the header "
                "bitbybit expects (x-api-key or x-bitbybit-key)")
    return ("the API key lacks the orders READ/WRITE scopes, or this host's IP address is not in the key's "
            "allowlist")
