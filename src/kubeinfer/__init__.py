"""kubeinfer: serve machine-learning models for inference, from one machine to a Kubernetes GPU cluster."""

__version__ = "0.1.0"

__all__ = ["__version__"]
