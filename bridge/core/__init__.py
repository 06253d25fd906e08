"""The order core: Bik's payloads, the exactly-once service and the two ports it speaks through."""
