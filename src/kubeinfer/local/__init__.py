"""kubeinfer.local."""
