"""Checking Bik's credentials on each call, before the body is read, in constant time."""
from __future__ import annotations

import base64
import binascii
import hmac
from typing import Mapping

from bridge.config import AuthConfig


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


class Authenticator:
    """One endpoint's scheme: none, bearer, api_key or basic."""

    def __init__(self, settings: AuthConfig):
        self.settings = settings

    def allows(self, headers: Mapping[str, str]) -> bool:
        s = self.settings
        if s.scheme == "none":
            return True
        if s.scheme == "api_key":
            return _same(headers.get(s.header, ""), s.token.get_secret_value())
        scheme, _, credentials = headers.get("Authorization", "").strip().partition(" ")
        credentials = credentials.strip()
        if s.scheme == "bearer":
            return scheme.lower() == "bearer" and _same(credentials, s.token.get_secret_value())
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        user, sep, password = decoded.partition(":")
        # Both halves are always compared so timing does not tell which one was wrong.
        user_ok = _same(user, s.username or "")
        password_ok = _same(password, s.password.get_secret_value())
        return bool(sep) and user_ok and password_ok
