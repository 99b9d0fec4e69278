"""kubeinfer.runtimes."""
