"""The local platform: orders kept in SQLite, moved along by `local set-status`."""
from __future__ import annotations

import pytest

from adapters.local.adapter import LocalAdapter
from bridge.core.deadline import Deadline
from bridge.core.errors import BadRequest, OrderNotFound
from bridge.core.models import PlaceOrderRequest
from bridge.core.ports import Lookup
from bridge.core.presentation import Presentation


@pytest.fixture
def adapter(tmp_path) -> LocalAdapter:
    return LocalAdapter(str(tmp_path / "local.db"), Presentation())


def request_for(body: dict, draft: str) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate({**body, "draftOrderId": draft})


def test_ids_count_up_from_1001(adapter, place_order_body):
    """Orders are numbered L-1001, L-1002, ... and named after their number."""
    first = adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    second = adapter.place(request_for(place_order_body, "nb_2"), Deadline(5))
    assert (first.id, second.id) == ("L-1001", "L-1002")
    assert first.name == "#L-1001"


def test_placed_order_echoes_bik(adapter, place_order_body):
    """The saved order carries Bik's items, totals and draft id, and the default currency."""
    order = adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    assert order.status == "ORDERED"
    assert order.paymentStatus == "pending"
    assert order.fulfillmentStatus == "unfulfilled"
    assert order.total == 947 and order.subTotal == 998 and order.discount == 100
    assert order.currency == "INR"
    assert order.items[0].variantId == 40946134352009 and order.items[0].quantity == 2
    assert order.partnersData == {"id": "nb_1"}
    assert order.invoiceUrl is None and order.deliveryInfo is None


def test_paid_order_and_presentation(tmp_path, place_order_body):
    """paymentPending false means paid; name and invoice templates and Bik's currency are used."""
    adapter = LocalAdapter(str(tmp_path / "local.db"), Presentation(
        name_format="BIK-{number}", invoice_url_template="https://s.example/pay/{id}?d={draft_id}"))
    place_order_body["paymentPending"] = False
    place_order_body["order"]["currency"] = "USD"
    order = adapter.place(request_for(place_order_body, "nb_9"), Deadline(5))
    assert order.paymentStatus == "paid"
    assert order.name == "BIK-1001"
    assert order.invoiceUrl == "https://s.example/pay/L-1001?d=nb_9"
    assert order.currency == "USD"


def test_same_draft_twice_is_the_same_order(adapter, place_order_body):
    """Placing one draft twice at adapter level returns the first order and creates no second."""
    first = adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    place_order_body["order"]["items"][0]["quantity"] = 5
    again = adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    assert again == first
    assert adapter.place(request_for(place_order_body, "nb_2"), Deadline(5)).id == "L-1002"


def test_orders_survive_a_new_adapter(tmp_path, place_order_body):
    """The store is a file: another adapter on it sees the same orders."""
    path = str(tmp_path / "local.db")
    placed = LocalAdapter(path, Presentation()).place(request_for(place_order_body, "nb_1"), Deadline(5))
    assert LocalAdapter(path, Presentation()).get("L-1001", Deadline(5)) == placed


def test_find_by_draft(adapter, place_order_body):
    """find_by_draft finds the order placed for a draft; before that, its own table proves it absent."""
    assert adapter.find_by_draft("nb_1", None, Deadline(5), None) == Lookup.absent()
    placed = adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    assert adapter.find_by_draft("nb_1", None, Deadline(5), None) == Lookup.found(placed)


def test_set_status_shows_in_get(adapter, place_order_body):
    """set_status moves status, payment, fulfillment and tracking; get shows them."""
    adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    returned = adapter.set_status("L-1001", "DELIVERED", "paid", "fulfilled", "https://t.example/1")
    order = adapter.get("L-1001", Deadline(5))
    assert returned == order
    assert order.status == "DELIVERED"
    assert order.paymentStatus == "paid"
    assert order.fulfillmentStatus == "fulfilled"
    assert order.deliveryInfo.trackingURL == "https://t.example/1"


def test_set_status_changes_only_what_is_given(adapter, place_order_body):
    """Fields left out keep their value."""
    adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    adapter.set_status("L-1001", status="IN PROGRESS")
    order = adapter.set_status("L-1001", payment="refunded")
    assert (order.status, order.paymentStatus, order.fulfillmentStatus) == ("IN PROGRESS", "refunded", "unfulfilled")


@pytest.mark.parametrize("changes", [{"status": "SHIPPED"}, {"payment": "PAID"}, {"fulfillment": "done"}])
def test_set_status_rejects_invalid_values(adapter, place_order_body, changes):
    """Values outside Bik's vocabulary are refused and nothing changes."""
    adapter.place(request_for(place_order_body, "nb_1"), Deadline(5))
    with pytest.raises(BadRequest):
        adapter.set_status("L-1001", **changes)
    order = adapter.get("L-1001", Deadline(5))
    assert (order.status, order.paymentStatus, order.fulfillmentStatus) == ("ORDERED", "pending", "unfulfilled")


@pytest.mark.parametrize("order_id", ["L-1001", "L-1000", "L-999", "L-", "X-1001", "1001", "", "L-1e3",
                                      "L-99999999999999999999"])
def test_unknown_id_is_not_found(adapter, order_id):
    """Ids that name no order raise OrderNotFound, for get and set_status alike."""
    with pytest.raises(OrderNotFound):
        adapter.get(order_id, Deadline(5))
    with pytest.raises(OrderNotFound):
        adapter.set_status(order_id, status="DELIVERED")


def test_build_create_sends_nothing(adapter, place_order_body):
    """dry-run's request list describes the insert without touching the store."""
    planned = adapter.build_create(request_for(place_order_body, "nb_1"))
    assert planned[0].json["draft_id"] == "nb_1"
    assert adapter.find_by_draft("nb_1", None, Deadline(5), None) == Lookup.absent()
    assert "0 orders" in adapter.check_credentials(Deadline(5))
