"""kubeinfer.cli."""
