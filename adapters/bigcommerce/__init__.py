"""BigCommerce v2 Orders: request builder, mapping and adapter."""
