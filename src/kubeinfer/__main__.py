"""``python -m kubeinfer`` is the ``kubeinfer`` command."""

from kubeinfer.cli.app import main

main()
