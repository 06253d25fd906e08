"""bik-bridge: the Bik placeOrder/getOrder backend for a store that is not on Shopify, on any registered platform."""
