"""kubeinfer.autoscale."""
