"""The two bare apps the issue's throughput targets are scaled from, to measure them on the same machine.

POST /replay looks the draft id up in Redis and returns what is stored there (storing a small answer the first
time); POST /forward sends the store's create body for the draft with one pooled requests session and returns
the store's answer. No auth, validation, idempotency or logging: what is left is Flask, gunicorn, Redis and
requests. Served by `python -m gunicorn -k gthread ... "bench.reference:create_app()"` with the settings in the
environment (BENCH_REFERENCE_REDIS_URL, _STORE_URL, _STORE_TOKEN, _CREATE_BODY).
"""
from __future__ import annotations

import json
import os

import redis
import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter


def create_app() -> Flask:
    app = Flask("bench_reference")
    client = redis.Redis.from_url(os.environ["BENCH_REFERENCE_REDIS_URL"])
    namespace = os.environ.get("BENCH_REFERENCE_NAMESPACE", "bench:reference")
    store_url = os.environ["BENCH_REFERENCE_STORE_URL"]
    headers = {"X-Auth-Token": os.environ["BENCH_REFERENCE_STORE_TOKEN"], "Accept": "application/json"}
    with open(os.environ["BENCH_REFERENCE_CREATE_BODY"], encoding="utf-8") as handle:
        create_body = handle.read()
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=64))

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.post("/replay")
    def replay() -> Response:
        key = f"{namespace}:{json.loads(request.get_data())['draftOrderId']}"
        stored = client.get(key)
        if stored is None:
            stored = b'{"order":{"id":"1"}}'
            client.set(key, stored, ex=3600)
        return Response(stored, mimetype="application/json")

    @app.post("/forward")
    def forward() -> Response:
        draft = json.loads(request.get_data())["draftOrderId"]
        answer = session.post(store_url, data=create_body.replace("__DRAFT__", draft),
                              headers={**headers, "Content-Type": "application/json"}, timeout=10)
        return Response(answer.content, status=answer.status_code, mimetype="application/json")

    return app
