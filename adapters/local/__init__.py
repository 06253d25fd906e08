"""The local platform: orders kept in SQLite, for trying the whole flow without a store account."""
from adapters.local.settings import LocalConfig, store_scope
from bridge.core.platform import Platform, lazy

PLATFORM = Platform(
    settings=LocalConfig,
    adapter=lazy("adapters.local.adapter", "adapter_from"),
    store_scope=store_scope,
    path_keys=("db_path",),
)
