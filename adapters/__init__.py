"""Platform adapters and idempotency stores: the implementations of `bridge.core.ports`."""
