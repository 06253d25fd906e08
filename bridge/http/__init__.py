"""Bik's HTTP side: the app factory, its views, auth, the OpenAPI document and the server that runs it."""
