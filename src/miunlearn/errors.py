"""User-facing errors.

Everything a user can get wrong (a name, a path, a number) raises :class:`MiunlearnError`; the CLI
prints its message on one line and exits non-zero, the Python API lets it propagate. Anything else
that escapes is a bug in miunlearn, except :class:`WorkLimitReached`, which never leaves ``unlearn``.
"""

from __future__ import annotations


class MiunlearnError(ValueError):
    """A problem with the user's input, explained in one line."""


class DataNotFoundError(MiunlearnError, FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


class WorkLimitReached(Exception):
    """A forward pass would have taken an unlearning method past its work limit. Raised by the work counter and
    caught by :func:`miunlearn.unlearn`; here, below every layer, so that code which turns other exceptions into
    user errors (the compiled training step's guard) can let it through."""
