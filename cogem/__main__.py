"""``python -m cogem`` is the ``cogem`` command."""

from cogem.cli import main

main()
