"""bik-bridge: the Bik placeOrder/getOrder backend for BigCommerce, bitbybit and a local store."""
