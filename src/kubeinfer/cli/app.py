"""The ``kubeinfer`` command line: each command parses its flags and calls library code (a few lines each).

``app`` is made in :mod:`kubeinfer.cli.base`; the command modules register their commands on it when imported,
here, in the order of ``--help``. This module is the entry point (``kubeinfer = "kubeinfer.cli.app:main"``,
``python -m kubeinfer``); nothing below it imports it, so the command modules form no import circle with it.
"""

from __future__ import annotations

import sys

from kubeinfer.cli.base import app

# The command modules register their commands on ``app`` when imported: in this order, the order of ``--help``.
# isort: off
from kubeinfer.cli import replica  # noqa: F401 - validate, prepare, serve, bench
from kubeinfer.cli import local  # noqa: F401 - up, apply, get, describe, scale, logs, down
from kubeinfer.cli import kube  # noqa: F401 - render, deploy, delete, status, operator, build
from kubeinfer.cli import dashboard  # noqa: F401 - dashboard (a cluster's services)
from kubeinfer.cli import sim  # noqa: F401 - simulate
from kubeinfer.cli import plan  # noqa: F401 - plan, profile
from kubeinfer.cli import storage  # noqa: F401 - fetch
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
