"""``python -m miunlearn``: the same command line as the ``miunlearn`` script."""

from miunlearn.cli import main

main()
