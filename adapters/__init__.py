"""Platform adapters and idempotency stores: the implementations of `bridge.core.ports`."""

# What reading a platform's order of an unexpected shape raises (a string where an object was expected, ...).
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)
