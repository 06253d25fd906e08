"""The local platform: orders kept in SQLite, for trying the whole flow without a store account."""
