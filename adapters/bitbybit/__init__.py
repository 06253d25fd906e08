"""bitbybit open API: settings, request builder, mapping, variant map and adapter, described by `PLATFORM`."""
from adapters.bitbybit.settings import BitbybitConfig, store_scope
from bridge.core.platform import Http, Platform, lazy

_ADAPTER = "adapters.bitbybit.adapter"
_ERRORS = "adapters.bitbybit.errors"

PLATFORM = Platform(
    settings=BitbybitConfig,
    adapter=lazy(_ADAPTER, "adapter_from"),
    store_scope=store_scope,
    http=Http(base_url=lambda settings: settings.api_base_url, rate_limit=lazy(_ADAPTER, "rate_limit_headers"),
              error_message=lazy(_ERRORS, "error_message")),
    # bitbybit's order id is internal; the name shows the order number the merchant sees.
    default_name_format="#{number}",
    path_keys=("variant_map",),
    placeholders={"api_key": "API_KEY"},
    # bitbybit names the cause in its error code (INVALID_API_KEY, INSUFFICIENT_SCOPE, IP_NOT_ALLOWED, ...).
    auth_hint=lazy(_ERRORS, "auth_hint"),
    check_files=lazy("adapters.bitbybit.variant_map", "check_variant_map"),
)
