"""`bik-bridge simulate`: play Bik against a running bridge and hold every answer to Bik's contract.

This is how a deployment is proven before its URLs are given to Bik. It places one real order (a
fresh draft id per run, so it can run again), places it again, reads it back, and checks that an
unknown order and wrong credentials are refused.
"""
from __future__ import annotations

import base64
import copy
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

import requests
from pydantic import ValidationError

from bridge.core.models import BikOrder
from bridge.ops.logs import mask_text, scrub

# Bik's sample order (its documentation's placeOrder example). Its product ids exist in the local
# platform only: against a real store, pass --payload with a product of that store.
SAMPLE_PAYLOAD = {
    "draftOrderId": "",
    "paymentPending": True,
    "order": {
        "id": "",
        "name": "",
        "phoneNumber": "+919876543210",
        "email": "buyer@example.com",
        "items": [{"productId": 6862852391049, "variantId": 40946134352009, "name": "Skin Renew Cream",
                   "variantName": "Default", "quantity": 2, "price": 499}],
        "subTotal": 998,
        "shippingCharge": 49,
        "discount": 100,
        "total": 947,
        "currency": "",
        "address": {"firstName": "Bik", "lastName": "Tester", "address1": "Bik Office, HSR Layout, Sector 6",
                    "city": "Bengaluru", "state": "Karnataka", "country": "India", "countryCode": "IN",
                    "zip": "560102", "phoneNumber": "+919876543210"},
        "tags": "ordered_via_bik",
    },
}


class ContractBreach(Exception):
    """An answer Bik would not accept; the message says what is wrong in plain words."""


class _Skip(Exception):
    """A step that cannot run, and why."""


@dataclass(frozen=True)
class Credentials:
    """How the simulated Bik authenticates, as registered in Bik's onboarding screen."""

    scheme: str = "none"
    token: Optional[str] = None
    header: str = "X-Api-Key"
    username: Optional[str] = None
    password: Optional[str] = None

    def problem(self) -> Optional[str]:
        """What is missing for the scheme, if anything."""
        if self.scheme in ("bearer", "api_key") and not self.token:
            return f"--auth-scheme {self.scheme} needs --token (or BIK_BRIDGE_TOKEN)"
        if self.scheme == "basic" and not (self.username and self.password):
            return "--auth-scheme basic needs --username and --password (or BIK_BRIDGE_PASSWORD)"
        return None

    def headers(self) -> dict:
        return self._headers(self.token or "", self.password or "")

    def wrong_headers(self) -> dict:
        """The same scheme with a secret that cannot be the right one."""
        wrong = f"wrong-{secrets.token_hex(8)}"
        return self._headers(wrong, wrong)

    def _headers(self, token: str, password: str) -> dict:
        if self.scheme == "bearer":
            return {"Authorization": f"Bearer {token}"}
        if self.scheme == "api_key":
            return {self.header: token}
        if self.scheme == "basic":
            pair = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}


@dataclass
class Check:
    """One step of the simulation and how it went."""

    name: str
    passed: Optional[bool] = None  # None: skipped
    detail: str = ""
    ms: float = 0.0


def endpoint_urls(url: str, get_order_url: Optional[str] = None) -> tuple[str, str]:
    """placeOrder and getOrder URLs from a base URL or the placeOrder URL itself."""
    url = url.rstrip("/")
    if url.endswith("/placeOrder"):
        place = url
        base = url[: -len("/placeOrder")]
    else:
        place, base = f"{url}/placeOrder", url
    return place, (get_order_url or f"{base}/getOrder")


def new_draft_id() -> str:
    """A draft id no earlier run used: `sim_<unix seconds>_<random>`, Bik's `nb_` shape under its own prefix."""
    return f"sim_{int(time.time())}_{secrets.token_hex(4)}"


def with_draft_id(payload: dict, draft_id: str) -> dict:
    """The payload under a fresh draft id (Bik repeats it as order.id)."""
    fresh = copy.deepcopy(payload)
    fresh["draftOrderId"] = draft_id
    if isinstance(fresh.get("order"), dict):
        fresh["order"]["id"] = draft_id
    return fresh


def _excerpt(response: requests.Response) -> str:
    """The start of an answer, to show beside a breach, with any customer data in it masked."""
    try:
        text = json.dumps(scrub(response.json()), ensure_ascii=False)
    except ValueError:
        text = mask_text(response.text.strip().replace("\n", " "))
    return text if len(text) <= 300 else text[:300] + "..."


def _json_body(response: requests.Response) -> object:
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        raise ContractBreach(f"answered {response.status_code} with Content-Type {content_type or 'none'!r}, "
                             f"not application/json: {_excerpt(response)}")
    try:
        return response.json()
    except ValueError:
        raise ContractBreach(f"answered {response.status_code} with a body that is not JSON: "
                             f"{_excerpt(response)}") from None


def order_of(response: requests.Response) -> BikOrder:
    """The BikOrder of a 2xx answer `{"order": {...}}`, or the breach that stops Bik from reading it."""
    if not 200 <= response.status_code < 300:
        raise ContractBreach(f"answered {response.status_code}, expected 2xx: {_excerpt(response)}")
    body = _json_body(response)
    if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        raise ContractBreach(f'the body is not {{"order": {{...}}}}: {_excerpt(response)}')
    try:
        order = BikOrder.model_validate(body["order"])
    except ValidationError as exc:
        problems = "; ".join(f"order.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise ContractBreach(f"the order breaks Bik's BikOrder shape: {problems}") from None
    if not order.id.strip():
        raise ContractBreach("order.id is empty: Bik sends it back as orderId in getOrder")
    return order


def refusal_of(response: requests.Response, expected: Optional[int] = None) -> str:
    """The error message of a refusal (non-2xx, or exactly `expected`) with a JSON `{"error": ...}` body."""
    if expected is not None and response.status_code != expected:
        raise ContractBreach(f"answered {response.status_code}, expected {expected}: {_excerpt(response)}")
    if 200 <= response.status_code < 300:
        raise ContractBreach(f"answered {response.status_code}, expected a non-2xx refusal: {_excerpt(response)}")
    body = _json_body(response)
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        raise ContractBreach(f'the error body has no "error" message: {_excerpt(response)}')
    return body["error"]


@dataclass
class Simulation:
    """Bik's calls against one deployment, in the order Bik makes them."""

    place_url: str
    get_url: str
    credentials: Credentials = Credentials()
    payload: dict = field(default_factory=lambda: copy.deepcopy(SAMPLE_PAYLOAD))
    timeout: float = 30.0
    out: Optional[TextIO] = None  # stdout at the time of printing
    session: requests.Session = field(default_factory=requests.Session)
    draft_id: str = field(default_factory=new_draft_id)
    checks: list[Check] = field(default_factory=list)
    order: Optional[BikOrder] = None
    first_body: bytes = b""
    placed_ids: list[str] = field(default_factory=list)

    def run(self) -> bool:
        """Play every step, print a line for each as it runs and a verdict; True when all passed."""
        self._say(f"bik-bridge simulate: placeOrder {self.place_url}")
        self._say(f"                     getOrder   {self.get_url}")
        self._say(f"auth {self.credentials.scheme}, draftOrderId {self.draft_id}")
        steps: list[tuple[str, Callable[[], str]]] = [
            ("placeOrder places a new draft", self._place),
            ("placeOrder again replays the same order", self._replay),
            ("getOrder reads the placed order", self._get),
            ("getOrder on an unknown id is refused", self._get_unknown),
            ("placeOrder with wrong credentials is 401", self._place_wrong_credentials),
            ("getOrder with wrong credentials is 401", self._get_wrong_credentials),
        ]
        width = max(len(name) for name, _ in steps) + 2
        for number, (name, step) in enumerate(steps, 1):
            self._say(f"[{number}/{len(steps)}] {name} ".ljust(width + 8, "."), end=" ")
            self.checks.append(self._run_step(name, step))
            check = self.checks[-1]
            verdict = {True: "ok", False: "FAIL", None: "skipped"}[check.passed]
            timing = f" ({check.ms:.0f} ms)" if check.passed is not None else ""
            self._say(f"{verdict}{timing}" + (f"  {check.detail}" if check.detail else ""))
        return self._verdict()

    # steps: each returns a detail for the report, raises ContractBreach, or raises _Skip ------

    def _place(self) -> str:
        body = with_draft_id(self.payload, self.draft_id)
        response = self._post(self.place_url, body, self.credentials.headers())
        self.order = order_of(response)
        self.first_body = response.content
        self.placed_ids.append(self.order.id)
        notes = [f"order {self.order.id} ({self.order.status}, {self.order.paymentStatus})"]
        partners = (self.order.partnersData or {}).get("id")
        if partners != self.draft_id:
            notes.append("partnersData.id does not carry the draft id (optional)")
        return "; ".join(notes)

    def _replay(self) -> str:
        first = self._needs_order()
        body = with_draft_id(self.payload, self.draft_id)
        response = self._post(self.place_url, body, self.credentials.headers())
        again = order_of(response)
        if again.id not in self.placed_ids:
            self.placed_ids.append(again.id)
        if again.id != first.id:
            raise ContractBreach(f"the same draftOrderId made another order: {again.id} after {first.id} "
                                 "(Bik's retries would duplicate orders)")
        same = "byte-identical answer" if response.content == self.first_body else "same order id"
        return f"{same}, order {again.id}"

    def _get(self) -> str:
        first = self._needs_order()
        response = self._post(self.get_url, {"orderId": first.id}, self.credentials.headers())
        read = order_of(response)
        if read.id != first.id:
            raise ContractBreach(f"asked for order {first.id}, got order {read.id}")
        return f"order {read.id}: {read.status}, payment {read.paymentStatus}"

    def _get_unknown(self) -> str:
        unknown = f"bik-bridge-simulate-unknown-{secrets.token_hex(6)}"
        response = self._post(self.get_url, {"orderId": unknown}, self.credentials.headers())
        message = refusal_of(response)
        return f"{response.status_code}: {message}"

    def _place_wrong_credentials(self) -> str:
        self._needs_auth()
        # The same draft as step 1: a bridge that wrongly let this in could only replay, never place another order.
        body = with_draft_id(self.payload, self.draft_id)
        response = self._post(self.place_url, body, self.credentials.wrong_headers())
        return f"401: {refusal_of(response, 401)}"

    def _get_wrong_credentials(self) -> str:
        self._needs_auth()
        order_id = self.order.id if self.order else f"bik-bridge-simulate-{secrets.token_hex(6)}"
        response = self._post(self.get_url, {"orderId": order_id}, self.credentials.wrong_headers())
        return f"401: {refusal_of(response, 401)}"

    # helpers ------------------------------------------------------------------------------

    def _needs_order(self) -> BikOrder:
        if self.order is None:
            raise _Skip("needs the order of step 1")
        return self.order

    def _needs_auth(self) -> None:
        if self.credentials.scheme == "none":
            raise _Skip("--auth-scheme none: the bridge lets anyone in, so there are no wrong credentials")

    def _post(self, url: str, body: dict, headers: dict) -> requests.Response:
        try:
            return self.session.post(url, json=body, headers={"Content-Type": "application/json", **headers},
                                     timeout=self.timeout)
        except requests.Timeout:
            raise ContractBreach(f"no answer from {url} within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise ContractBreach(f"cannot reach {url}: {type(exc).__name__}") from None

    def _run_step(self, name: str, step: Callable[[], str]) -> Check:
        started = time.perf_counter()
        try:
            detail = step()
        except _Skip as skip:
            return Check(name, None, str(skip))
        except ContractBreach as breach:
            return Check(name, False, str(breach), (time.perf_counter() - started) * 1000)
        return Check(name, True, detail, (time.perf_counter() - started) * 1000)

    def _verdict(self) -> bool:
        failed = [c for c in self.checks if c.passed is False]
        skipped = [c for c in self.checks if c.passed is None]
        passed = [c for c in self.checks if c.passed]
        # A step skipped for want of step 1's order is a failure in all but name.
        blocked = [c for c in skipped if c.detail.startswith("needs")]
        ok = not failed and not blocked
        if ok:
            counts = f"{len(passed)} of {len(self.checks)} checks passed"
        else:
            counts = f"{len(failed)} of {len(self.checks)} checks failed"
        if skipped:
            counts += f", {len(skipped)} skipped"
        self._say("")
        self._say(f"{'PASS' if ok else 'FAIL'}: {counts}")
        for check in failed + blocked:
            self._say(f"  - {check.name}: {check.detail}")
        if self.placed_ids:
            self._say(f"note: this placed {'orders' if len(self.placed_ids) > 1 else 'order'} "
                      f"{', '.join(self.placed_ids)} (draft {self.draft_id}) in the store: cancel "
                      f"{'them' if len(self.placed_ids) > 1 else 'it'} there if the store is live")
        if ok:
            self._say("The deployment answers as Bik expects: register these URLs and this auth in Bik.")
        return ok

    def _say(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.out or sys.stdout, flush=True)


def load_payload(path: Optional[str]) -> dict:
    """The placeOrder body to send: a file, or Bik's sample order."""
    if path is None:
        return copy.deepcopy(SAMPLE_PAYLOAD)
    with open(path, encoding="utf-8") as handle:
        body = json.load(handle)
    if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        raise ValueError(f'{path} must hold a placeOrder body {{"draftOrderId", "paymentPending", "order"}}')
    return body
