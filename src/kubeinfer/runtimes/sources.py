"""Check, before anything starts, that the model a spec names can be found: the file or folder of ``model.uri``
exists (and is of the kind its format reads; a remote uri has a scheme :mod:`kubeinfer.storage` reads), and a Python model's module is importable from where the replica
will look. The checks import nothing and run no user code: a module is found with :mod:`importlib.machinery`'s
path finder, as ``import`` would find it, without executing it.

``validate``, ``up`` and ``apply`` call :func:`model_source_problems` so that a wrong path is a one-line error naming
the field and the path, not a replica that starts, fails its model load and restarts.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from pathlib import Path

from kubeinfer.spec import resolve_uri
from kubeinfer.spec.service import ModelSpec
from kubeinfer.storage.uris import is_remote, uri_problem

__all__ = ["model_source_problems"]

# Formats whose artifact is a folder, not a single file.
_FOLDER_FORMATS = frozenset({"sentence-transformers", "llm"})  # a Hugging Face layout folder


def model_source_problems(model: ModelSpec, base_dir: Path, field: str = "spec.model") -> list[str]:
    """What would stop ``model`` from loading, found without loading it; each item names the field and the fix.

    ``base_dir`` is the spec file's folder (relative URIs are resolved against it, as the replica does); ``field``
    is where the model is in the spec (``spec.models[2]`` for an entry of ``spec.models``). A folder of numbered
    version folders (Triton's layout, ``uri/<version>/``) is checked when the versions load, each on its own."""
    problems: list[str] = []
    path: Path | None = None
    if model.uri:
        problem = uri_problem(model.uri)
        if problem:
            return [f"{field}.uri {model.uri!r}: {problem}"]
        # a remote model is found when it is fetched (kubeinfer.storage), with an error naming the uri
        path = None if is_remote(model.uri) else resolve_uri(model.uri, base_dir)
        if path is None:
            pass
        elif not path.exists():
            problems.append(
                f"{field}.uri {model.uri!r}: {path} does not exist (a relative uri is read from the spec file's "
                f"folder, {base_dir})"
            )
        elif path.is_dir() and any(p.is_dir() and p.name.isdigit() for p in path.iterdir()):
            pass  # version folders: the server reports a version that does not load
        elif model.format in _FOLDER_FORMATS and not path.is_dir():
            problems.append(f"{field}.uri {model.uri!r}: format {model.format!r} reads a folder, {path} is a file")
        elif model.format not in _FOLDER_FORMATS and model.format not in ("python", "onnx") and path.is_dir():
            problems.append(f"{field}.uri {model.uri!r}: format {model.format!r} reads a file, {path} is a folder")
    if model.format == "python" and model.className:
        module = model.className.partition(":")[0]
        top = module.split(".")[0]
        where = [base_dir] + ([path if path.is_dir() else path.parent] if path is not None else [])
        found = top in sys.builtin_module_names or PathFinder.find_spec(top, [str(p) for p in where] + sys.path)
        # a remote uri's folder is on the import path too, once fetched: the module is looked for when it loads
        if not found and not (model.uri and is_remote(model.uri)):
            problems.append(
                f"{field}.className {model.className!r}: no module {top!r} in {', '.join(map(str, where))} or "
                f"the installed packages (put {top}.py beside the spec file, or install the package that has it)"
            )
    return problems
