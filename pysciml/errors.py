"""Exceptions. Two tiers: :class:`InputError` for bad input (raised at once, names the argument and the
fix); :class:`SolverError` for numerical failure when ``throw=True`` (otherwise a return code is set)."""

from __future__ import annotations

__all__ = ["InputError", "SolverError", "RHSError", "JuliaNotAvailableError"]


class InputError(ValueError):
    """Bad input to a pysciml call. The message names the argument and says how to fix it."""


class SolverError(RuntimeError):
    """A solve failed numerically and ``throw=True`` was given. ``retcode`` and ``message`` say why."""

    def __init__(self, message: str, retcode: object = None) -> None:
        super().__init__(message)
        self.retcode = retcode


class RHSError(RuntimeError):
    """A user function (``f``, ``jac``, ``tgrad``) raised during a solve; the message says which and at which
    ``t``, and the original exception is chained as ``__cause__``."""


class JuliaNotAvailableError(RuntimeError):
    """The Julia engine was asked for but Julia (juliacall) cannot be started here."""
