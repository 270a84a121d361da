"""User-facing errors.

Everything a user can get wrong (a name, a path, a number) raises :class:`MiunlearnError`; the CLI
prints its message on one line and exits non-zero, the Python API lets it propagate. Anything else
that escapes is a bug in miunlearn.
"""

from __future__ import annotations


class MiunlearnError(ValueError):
    """A problem with the user's input, explained in one line."""


class DataNotFoundError(MiunlearnError, FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to get them."""
