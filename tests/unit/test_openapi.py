"""The bridge's OpenAPI document: valid, true to the configured auth, and true to what the app answers."""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from bridge.bootstrap import build_app, parse_config
from bridge.http.openapi import build_openapi

TOKEN = "bik-test-token"
BIK = ("/placeOrder", "/getOrder")


def config_of(tmp_path, **sections):
    raw = {
        "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db"), "wait_seconds": 0},
        "local": {"db_path": str(tmp_path / "local.db")},
        **sections,
    }
    return parse_config(raw, {})


AUTHS = {
    "none": {"auth": {"scheme": "none"}},
    "bearer": {"auth": {"scheme": "bearer", "token": TOKEN}},
    "api_key": {"auth": {"scheme": "api_key", "token": TOKEN, "header": "X-Bik-Key"}},
    "basic": {"auth": {"scheme": "basic", "username": "bik", "password": TOKEN}},
    "overridden": {"auth": {"scheme": "bearer", "token": TOKEN},
                   "auth_overrides": {"getOrder": {"scheme": "api_key", "token": "other", "header": "X-Read-Key"}}},
    "base_path": {"auth": {"scheme": "bearer", "token": TOKEN}, "server": {"base_path": "/api/bik"},
                  "metrics": {"token": "scrape"}},
}


@pytest.mark.parametrize("name", AUTHS)
def test_document_is_valid_openapi(tmp_path, name):
    validate_spec(build_openapi(config_of(tmp_path, **AUTHS[name])))


def scheme_of(document, path):
    requirement = document["paths"][path]["post"]["security"]
    if not requirement:
        return None
    (name,) = requirement[0]
    return document["components"]["securitySchemes"][name]


def test_security_follows_the_configured_scheme(tmp_path):
    expected = {
        "none": None,
        "bearer": {"type": "http", "scheme": "bearer"},
        "api_key": {"type": "apiKey", "in": "header", "name": "X-Bik-Key"},
        "basic": {"type": "http", "scheme": "basic"},
    }
    for name, scheme in expected.items():
        document = build_openapi(config_of(tmp_path, **AUTHS[name]))
        assert [scheme_of(document, path) for path in BIK] == [scheme, scheme], name


def test_security_follows_per_endpoint_overrides(tmp_path):
    document = build_openapi(config_of(tmp_path, **AUTHS["overridden"]))
    assert scheme_of(document, "/placeOrder") == {"type": "http", "scheme": "bearer"}
    assert scheme_of(document, "/getOrder") == {"type": "apiKey", "in": "header", "name": "X-Read-Key"}


def test_document_holds_no_secret(tmp_path):
    text = str(build_openapi(config_of(tmp_path, **AUTHS["base_path"])))
    assert TOKEN not in text and "scrape" not in text


def test_paths_sit_under_the_base_path_and_probes_at_both(tmp_path):
    paths = build_openapi(config_of(tmp_path, **AUTHS["base_path"]))["paths"]
    assert {"/api/bik/placeOrder", "/api/bik/getOrder", "/healthz", "/api/bik/healthz", "/readyz",
            "/api/bik/readyz", "/openapi.json"} <= set(paths)
    assert "/placeOrder" not in paths


def test_errors_document_retry_after_where_bik_should_wait(tmp_path):
    responses = build_openapi(config_of(tmp_path, **AUTHS["bearer"]))["paths"]["/placeOrder"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "409", "413", "415", "422", "502", "503", "504"}
    assert [status for status, r in responses.items() if "Retry-After" in r["headers"]] == ["409", "502", "503", "504"]


@pytest.fixture
def app_and_document(tmp_path):
    config = config_of(tmp_path, **AUTHS["bearer"])
    app = build_app(config)
    yield app.test_client(), build_openapi(config)
    app.extensions["bik_bridge"].store.close()


def response_validator(document, path, status):
    schema = document["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_openapi_json_is_served_without_credentials(app_and_document):
    client, document = app_and_document
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == document


def test_real_answers_match_the_document(app_and_document, place_order_body):
    """The 200 of placeOrder and getOrder, a 400 with details, a 401 and a 404, each against its documented schema."""
    client, document = app_and_document
    auth = {"Authorization": f"Bearer {TOKEN}"}
    placed = client.post("/placeOrder", json=place_order_body, headers=auth)
    got = client.post("/getOrder", json={"orderId": placed.get_json()["order"]["id"]}, headers=auth)
    invalid = client.post("/placeOrder", json={"draftOrderId": ""}, headers=auth)
    answers = [("/placeOrder", placed, "200"), ("/getOrder", got, "200"), ("/placeOrder", invalid, "400"),
               ("/getOrder", client.post("/getOrder", json={"orderId": "L-1"}), "401"),
               ("/getOrder", client.post("/getOrder", json={"orderId": "L-9"}, headers=auth), "404")]
    for path, response, status in answers:
        assert str(response.status_code) == status, response.get_data(as_text=True)
        response_validator(document, path, status).validate(response.get_json())
    assert invalid.get_json()["details"]


def test_request_schema_takes_what_the_model_takes(app_and_document, place_order_body):
    """Money as a JSON number only, ids as numbers or strings, paymentPending a boolean: the schema says so too."""
    _, document = app_and_document
    schema = document["paths"]["/placeOrder"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    place_order_body["order"]["total"] = 947.5
    place_order_body["order"]["items"][0]["variantId"] = "SKU-1"
    validator.validate(place_order_body)
    for path, value in ((("order", "total"), "947.00"), (("order", "items", 0, "quantity"), "2"),
                        (("paymentPending",), "false")):
        body = json.loads(json.dumps(place_order_body))
        *parents, last = path
        node = body
        for key in parents:
            node = node[key]
        node[last] = value
        assert not validator.is_valid(body), path
