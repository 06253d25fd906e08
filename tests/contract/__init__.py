"""BigCommerce's Orders v2 contract as the repository carries it: a structural extract of the official spec."""
from pathlib import Path

BIGCOMMERCE_ORDERS_SCHEMA = Path(__file__).with_name("bigcommerce_orders_v2.schema.json")
