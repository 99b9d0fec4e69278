"""kubeinfer.bench."""
