"""Exceptions and warnings. Two tiers: :class:`InputError` for bad input (raised at once, names the argument
and the fix); :class:`SolverError` for numerical failure when ``throw=True`` (otherwise a return code is set).
Every warning pysciml gives goes through :func:`warn_caller`, which points it at the user's line."""

from __future__ import annotations

import os
import sys
import warnings

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


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with ``message``, attributed to the first caller outside pysciml and torch, whichever path led here
    (``solve``, ``odeint``, a model's ``forward`` through ``nn.Module.__call__``, a backward through
    ``Tensor.backward``): the line of the user's code that asked for the solve."""
    # pysciml's folder and torch's (not imported here: pysciml.julia, which uses this module, starts without torch)
    torch = sys.modules.get("torch")
    libraries = tuple(os.path.dirname(os.path.abspath(path)) + os.sep
                      for path in (__file__, getattr(torch, "__file__", None)) if path)
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(libraries):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
