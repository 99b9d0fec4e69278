"""kubeinfer.server."""
