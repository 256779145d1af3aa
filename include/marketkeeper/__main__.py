"""``python -m marketkeeper`` is the ``marketkeeper`` console script."""

from marketkeeper.cli import main

main()
