"""A toy platform for the tests: orders kept in memory, proving a platform is one folder and one registry line."""
from bridge.core.platform import Platform, lazy
from tests.toy_platform.settings import ToySettings, store_scope

PLATFORM = Platform(
    settings=ToySettings,
    adapter=lazy("tests.toy_platform.adapter", "adapter_from"),
    store_scope=store_scope,
    default_name_format="#{number}",  # its ids carry a prefix; the merchant sees the number
)
