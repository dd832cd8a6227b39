"""Errors a user can fix (a path, an argument, a folder): the ``steer`` command prints their
message on one line and exits with status 2 (``--debug`` or ``STEER_DEBUG=1`` shows the traceback)."""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input: the message says what and, where it can, how to fix it."""
