"""kubeinfer.sim."""
