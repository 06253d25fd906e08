"""BigCommerce v2 Orders: settings, request builder, mapping and adapter, described by `PLATFORM`."""
from adapters.bigcommerce.settings import BigCommerceConfig, auth_hint, store_scope
from bridge.core.platform import Http, Platform, lazy

_ADAPTER = "adapters.bigcommerce.adapter"

PLATFORM = Platform(
    settings=BigCommerceConfig,
    adapter=lazy(_ADAPTER, "adapter_from"),
    store_scope=store_scope,
    # A known shipped order's shipments are read alongside the order, and an order answered without its
    # consignments reads its lines and addresses at once: one round trip of wall time each.
    http=Http(base_url=lambda settings: settings.api_base_url, rate_limit=lazy(_ADAPTER, "rate_limit_headers"),
              error_message=lazy(_ADAPTER, "error_message"), parallel_reads=True),
    placeholders={"store_hash": "STOREHASH", "access_token": "ACCESS_TOKEN"},
    auth_hint=auth_hint,
)
