"""Loading an ``InferenceService`` from YAML, with errors that name the file, line, field, value and the fix.

Validation happens once, here at the edge; everything past this point takes a valid, frozen spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeinfer.spec.service import InferenceService

__all__ = [
    "FieldError",
    "SpecError",
    "load_spec",
    "loads_spec",
    "merge_overrides",
    "resolve_uri",
    "safe_yaml",
    "strict_json",
    "validate_spec",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    value: Any
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        shown = "" if self.value is _MISSING else f" (got {self.value!r})"
        return f"{where}: {self.path}: {self.message}{shown}"


_MISSING: Any = object()


class SpecError(ValueError):
    """An invalid spec. ``errors`` lists every problem found, each with its field path."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(e.render(source) for e in errors))


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each mapping key / sequence item path in the YAML text to its 1-based line."""
    index: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node | None, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = (*path, str(k.value))
                index[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = (*path, str(i))
                index[p] = v.start_mark.line + 1
                walk(v, p)

    walk(root, ())
    return index


def _friendly(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    msg = str(err.get("msg", "invalid"))
    if kind == "extra_forbidden":
        return "unknown field: remove it or check its spelling (field names are camelCase, as in Kubernetes)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        ops = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
        bound = next(iter(ctx.values()), "")
        return f"must be a number {ops[kind]} {bound}"
    if kind.startswith("int_"):
        return "must be a whole number"
    if kind.startswith("float_"):
        return "must be a number"
    if kind.startswith("bool_"):
        return "must be true or false"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping (key: value)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg


def _errors_from(e: ValidationError, lines: dict[tuple[str, ...], int], doc: Any) -> list[FieldError]:
    out: list[FieldError] = []
    for err in e.errors():
        loc = tuple(str(p) for p in err["loc"])
        # pydantic puts union member names in loc ("int", "str"); drop those that are not real keys.
        loc = tuple(p for p in loc if not p.startswith("function-") and p not in ("int", "str"))
        value = _MISSING if err["type"] == "missing" else err.get("input", _MISSING)
        if isinstance(value, dict) and err["type"] == "value_error":
            value = _MISSING  # a model-level rule: the message names the fields
        line = None
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        out.append(FieldError(".".join(loc) or "(document)", value, _friendly(err), line))
    return out


def validate_spec(doc: Any, source: str = "<spec>", text: str | None = None) -> InferenceService:
    """Validate an already-parsed document (a dict, e.g. a custom resource's body)."""
    if not isinstance(doc, dict):
        raise SpecError(
            source,
            [
                FieldError(
                    "(document)",
                    _MISSING,
                    "must be a YAML mapping with apiVersion, kind, metadata and spec (see examples/iris/service.yaml)",
                )
            ],
        )
    try:
        return InferenceService.model_validate(doc)
    except ValidationError as e:
        raise SpecError(source, _errors_from(e, _line_index(text) if text else {}, doc)) from None


MAX_SPEC_BYTES = 1 << 20
"""A spec (or any YAML the CLI reads) larger than this is refused before parsing."""
MAX_YAML_NODES = 100_000
"""Nodes a YAML document may expand to, aliases counted each time they are used (an alias bomb of a few hundred
bytes expands to billions; the largest real spec is a few hundred nodes)."""


def safe_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse one YAML document safely: ``yaml.safe_load`` plus a size cap, a cap on the nodes aliases expand to
    (checked on the composed graph, before anything is built), and a duplicate key refused (YAML 1.2 forbids it;
    PyYAML keeps the last silently). Errors are :class:`SpecError` naming the line."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            source, [FieldError("(file)", _MISSING, f"is {len(text):,} bytes: a spec is at most {MAX_SPEC_BYTES:,}")]
        )
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = str(getattr(e, "problem", None) or e)[:200]
        raise SpecError(source, [FieldError("(document)", _MISSING, f"not valid YAML: {problem}", line)]) from None
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse a duplicate mapping key, and a document whose aliases expand past :data:`MAX_YAML_NODES`."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known  # an alias: the same node object again; its expansion counts every time it is used
        if depth > 200:
            raise SpecError(source, [FieldError("(document)", _MISSING, "nests deeper than 200 levels", _line(node))])
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        raise SpecError(
                            source,
                            [
                                FieldError(
                                    str(k.value)[:80],
                                    _MISSING,
                                    f"the key is given twice (first on line {seen[k.value]}): keep one",
                                    _line(k),
                                )
                            ],
                        )
                    seen[k.value] = _line(k)
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v, depth + 1)
        sizes[id(node)] = total
        if total > MAX_YAML_NODES:
            raise SpecError(
                source,
                [
                    FieldError(
                        "(document)",
                        _MISSING,
                        f"expands to more than {MAX_YAML_NODES:,} values (aliases repeat what they point to): "
                        "write the values out or use fewer aliases",
                        _line(node),
                    )
                ],
            )
        return total

    size(root, 0)


def strict_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses a duplicate key in an object (where ``json`` and orjson keep the last one
    silently), for files and control bodies people write by hand. Raises ``ValueError`` naming the key."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"key {k[:80]!r} is given twice in one object: keep one")
            out[k] = v
        return out

    return json.loads(text, object_pairs_hook=pairs)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def loads_spec(text: str, source: str = "<spec>") -> InferenceService:
    return validate_spec(safe_yaml(text, source), source, text)


def load_spec(path: str | Path) -> InferenceService:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(p), [FieldError("(file)", _MISSING, "no such file: check the path")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise SpecError(str(p), [FieldError("(file)", _MISSING, f"cannot read it: {e}")]) from None
    return loads_spec(text, str(p))


def merge_overrides(svc: InferenceService, overrides: Mapping[str, Any], source: str = "flags") -> InferenceService:
    """Apply dotted-path overrides (``spec.server.port=9000``), flags winning over the file, then revalidate."""
    doc = svc.model_dump(mode="json", exclude_unset=False, by_alias=True)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = doc
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if node is None:
                node = {}
        node[parts[-1]] = value
    return validate_spec(doc, source)


def resolve_uri(uri: str, base: Path | None) -> Path:
    """A model URI relative to the spec file's folder (absolute paths and ``file://`` are kept)."""
    raw = uri.removeprefix("file://")
    p = Path(raw).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p
