"""Each auth scheme accepts exactly the configured credentials."""
from __future__ import annotations

import base64

import pytest
from werkzeug.datastructures import Headers

from bridge.config import AuthConfig
from bridge.http.auth import Authenticator

TOKEN = "s3cret-token"


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def allows(settings: AuthConfig, headers: dict) -> bool:
    return Authenticator(settings).allows(Headers(headers))


def test_none_allows_anything():
    """Scheme none needs no header at all."""
    assert allows(AuthConfig(), {})
    assert allows(AuthConfig(), {"Authorization": "Bearer whatever"})


BEARER = AuthConfig(scheme="bearer", token=TOKEN)


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN}  "])
def test_bearer_accepts_the_token_with_any_case_of_scheme(value):
    """The scheme word is case-insensitive and surrounding spaces are ignored."""
    assert allows(BEARER, {"Authorization": value})


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": TOKEN},
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"Authorization": f"Bearer {TOKEN} extra"},
    {"Authorization": "Bearer tökén"},
    {"Authorization": basic(f"bik:{TOKEN}")},
    {"X-Api-Key": TOKEN},
])
def test_bearer_rejects_wrong_missing_or_malformed(headers):
    """Anything but `Bearer <token>` is refused."""
    assert not allows(BEARER, headers)


API_KEY = AuthConfig(scheme="api_key", token=TOKEN, header="X-Bik-Key")


@pytest.mark.parametrize("name", ["X-Bik-Key", "x-bik-key", "X-BIK-KEY"])
def test_api_key_reads_the_configured_header_case_insensitively(name):
    """The custom header is found whatever its case."""
    assert allows(API_KEY, {name: TOKEN})


def test_api_key_default_header_name():
    """Without a header name the key travels in X-Api-Key."""
    settings = AuthConfig(scheme="api_key", token=TOKEN)
    assert allows(settings, {"x-api-key": TOKEN})
    assert not allows(settings, {"X-Bik-Key": TOKEN})


@pytest.mark.parametrize("headers", [
    {},
    {"X-Bik-Key": ""},
    {"X-Bik-Key": "wrong"},
    {"X-Bik-Key": TOKEN + " "},
    {"X-Api-Key": TOKEN},
    {"Authorization": f"Bearer {TOKEN}"},
])
def test_api_key_rejects_wrong_missing_or_misplaced(headers):
    """Only the configured header with the exact token passes."""
    assert not allows(API_KEY, headers)


BASIC = AuthConfig(scheme="basic", username="bik", password="pa:ss word")


@pytest.mark.parametrize("value", [
    basic("bik:pa:ss word"),
    "basic " + base64.b64encode(b"bik:pa:ss word").decode(),
    "BASIC " + base64.b64encode(b"bik:pa:ss word").decode(),
])
def test_basic_accepts_user_and_password(value):
    """Basic credentials pass, the password may hold a colon, and the scheme word is case-insensitive."""
    assert allows(BASIC, {"Authorization": value})


@pytest.mark.parametrize("value", [
    "",
    "Basic",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"bik:pa:ss word").decode().rstrip("="),
    basic("bikpass word"),
    basic("bik"),
    basic("bob:pa:ss word"),
    basic("bik:wrong"),
    basic("bik:pa:ss word "),
    basic(":pa:ss word"),
    basic("bik:"),
    "Basic " + base64.b64encode(b"bik:\xff\xfe").decode(),
    "Basic ümlaut",
    "Bearer " + base64.b64encode(b"bik:pa:ss word").decode(),
])
def test_basic_rejects_bad_base64_missing_colon_wrong_user_or_password(value):
    """Malformed or wrong basic credentials are refused without raising."""
    assert not allows(BASIC, {"Authorization": value})
