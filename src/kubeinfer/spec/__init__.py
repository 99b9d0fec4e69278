"""The ``InferenceService`` spec, Kubernetes quantities, and validation errors that name the field."""

from kubeinfer.spec.load import (
    FieldError,
    SpecError,
    load_spec,
    loads_spec,
    merge_overrides,
    resolve_uri,
    validate_spec,
)
from kubeinfer.spec.quantity import Quantity, QuantityError, parse_quantity
from kubeinfer.spec.service import API_VERSION, KIND, InferenceService, ServiceSpec

__all__ = [
    "API_VERSION",
    "KIND",
    "FieldError",
    "InferenceService",
    "Quantity",
    "QuantityError",
    "ServiceSpec",
    "SpecError",
    "load_spec",
    "loads_spec",
    "merge_overrides",
    "parse_quantity",
    "resolve_uri",
    "validate_spec",
]
