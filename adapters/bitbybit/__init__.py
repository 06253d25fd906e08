"""bitbybit open API: request builder, mapping, variant map and adapter."""
