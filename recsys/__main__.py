"""``python -m recsys``: same as the ``recsys`` command."""

from recsys.cli.main import main

main()
