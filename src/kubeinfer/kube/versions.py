"""The Kubernetes minor versions kubeinfer renders for and validates against (a leaf module: the CLI reads it at
start-up without importing the renderer)."""

from typing import Final

__all__ = ["SUPPORTED_VERSIONS"]

SUPPORTED_VERSIONS: Final = ("1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
