"""kubeinfer.kube."""
