"""How an order is shown to Bik whatever the platform: its name, invoice link and currency."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bridge.config import ShopConfig


@dataclass(frozen=True)
class Presentation:
    """The merchant's store settings that shape every BikOrder."""

    name_format: Optional[str] = None  # None: `default_name_format`
    invoice_url_template: Optional[str] = None
    currency: str = "INR"
    scope_all: bool = False
    default_name_format: str = "#{id}"  # the platform's: "#{number}" where its ids are not what the merchant sees

    @classmethod
    def from_config(cls, store: ShopConfig, default_name_format: str = "#{id}") -> "Presentation":
        """The store settings, with the name format the platform uses when `store.name_format` is unset."""
        return cls(store.name_format, store.invoice_url_template, store.currency, store.get_order_scope == "all",
                   default_name_format)

    def name(self, order_id: str, number: Optional[str] = None, draft_id: str = "") -> str:
        template = self.name_format or self.default_name_format
        return template.format(id=order_id, number=number or order_id, draft_id=draft_id)

    def invoice_url(self, order_id: str, number: Optional[str] = None, draft_id: str = "") -> Optional[str]:
        if not self.invoice_url_template:
            return None
        return self.invoice_url_template.format(id=order_id, number=number or order_id, draft_id=draft_id)

    def currency_for(self, requested: str, store_currency: Optional[str]) -> str:
        """Bik's currency when it sends one, else the store's, else the configured default."""
        return requested or store_currency or self.currency
