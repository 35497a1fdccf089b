"""`UserError`: the base of every error that is the operator's to fix (a config value, the API key, a store
another daemon holds, a health socket, a refused Historical request, an unreadable CFTC file).

The CLI prints such an error as one line ``error: <message>`` and exits 1, never a traceback, so each message says
what is wrong, where, and what to do. This module imports nothing: the CLI catches `UserError` without loading the
modules that raise it (``health`` and ``--help`` must not import ArcticDB).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the operator fixes; the message names what, where and what to do."""
