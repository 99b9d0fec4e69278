"""kubeinfer.placement."""
