"""Adams multistep algorithms (fixed steps): OrdinaryDiffEq's AB3, AB4, AB5, ABM32, ABM43, ABM54, and torchdiffeq's
``AdamsBashforth`` / ``AdamsBashforthMoulton`` (``odeint``'s 'explicit_adams', 'implicit_adams', 'fixed_adams').

``solve(prob, AB4(), dt=0.01)``: every method needs ``dt`` (``adaptive=True`` is refused: no error estimator).

==========================  =====  ===================================  ======================  ================
method                      order  f per step (once started)            first steps             a changed step
==========================  =====  ===================================  ======================  ================
AB3                         3      1                                    2 Ralston (order 2)     restarts
AB4, AB5                    4, 5   1                                    3, 4 RK4                restarts
ABM32, ABM43, ABM54         3-5    2 (PECE)                             2 Ralston / 3, 4 RK4    restarts
AdamsBashforth              3..11  1                                    2 RK 3/8 rule           keeps coeffs
AdamsBashforthMoulton       4..12  1 + corrector iterations (<= 4)      2 RK 3/8 rule           keeps coeffs
==========================  =====  ===================================  ======================  ================

"restarts": where the step changes (a last step shortened to end on ``t1``) the method starts again from its
one-step method, so its order holds. torchdiffeq's two keep the equal-step coefficients there, as torchdiffeq
does (a warning says so): on a non-uniform grid their order drops. Their order grows with the history: the
``k``-step Adams-Bashforth formula once ``k`` values of ``f`` are known, up to ``max_order - 1`` steps.
Dense output (``saveat`` between steps, ``sol(t)``) is cubic Hermite. A solve split into segments
(``DiscreteAdjoint(checkpoints=K)``) starts the method again at each segment: its values differ from the unsplit
solve by the starting method's local error (measured: 3e-7 for AB4, dt 0.05, four segments of a rotation over
[0, 2]). ``solve`` checks fixed steps as for the other explicit methods (an Adams method beyond its real stability
interval, or with its difference of orders as large as a growing solution, ends as ``Unstable``). ``backend='julia'``
runs OrdinaryDiffEqAdamsBashforthMoulton's AB3 ... ABM54 (the same starting steps; where the step changes they keep
the equal-step formula instead of restarting, so a shortened last step has a lower order there); it refuses
``AdamsBashforth`` and ``AdamsBashforthMoulton`` (no OrdinaryDiffEq counterpart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .algorithms import Algorithm
from .engine.tableaus import adams as _adams
from .engine.tableaus._base import Tableau
from .errors import InputError

__all__ = ["AdamsAlgorithm", "AB3", "AB4", "AB5", "ABM32", "ABM43", "ABM54", "AdamsBashforth",
           "AdamsBashforthMoulton", "ADAMS_ALGORITHMS"]

_FIXED = "a multistep Adams method has no error estimator here (fixed steps only)"


@dataclass(frozen=True, repr=False)
class AdamsAlgorithm(Algorithm):
    """Marker: an Adams multistep method (fixed steps; the stepper keeps a history of ``f``)."""

    no_adaptivity_reason: ClassVar[str | None] = _FIXED


@dataclass(frozen=True, repr=False)
class AB3(AdamsAlgorithm):
    """3-step Adams-Bashforth, order 3; two Ralston steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.AB3  # type: ignore[assignment]
    julia_name: ClassVar[str] = "AB3"


@dataclass(frozen=True, repr=False)
class AB4(AdamsAlgorithm):
    """4-step Adams-Bashforth, order 4; three RK4 steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.AB4  # type: ignore[assignment]
    julia_name: ClassVar[str] = "AB4"


@dataclass(frozen=True, repr=False)
class AB5(AdamsAlgorithm):
    """5-step Adams-Bashforth, order 5; four RK4 steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.AB5  # type: ignore[assignment]
    julia_name: ClassVar[str] = "AB5"


@dataclass(frozen=True, repr=False)
class ABM32(AdamsAlgorithm):
    """AB3 predictor, 2-step Adams-Moulton corrector (order 3), PECE; two Ralston steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.ABM32  # type: ignore[assignment]
    julia_name: ClassVar[str] = "ABM32"


@dataclass(frozen=True, repr=False)
class ABM43(AdamsAlgorithm):
    """AB4 predictor, 3-step Adams-Moulton corrector (order 4), PECE; three RK4 steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.ABM43  # type: ignore[assignment]
    julia_name: ClassVar[str] = "ABM43"


@dataclass(frozen=True, repr=False)
class ABM54(AdamsAlgorithm):
    """AB5 predictor, 4-step Adams-Moulton corrector (order 5), PECE; four RK4 steps start it."""

    _tableau: ClassVar[Tableau | None] = _adams.ABM54  # type: ignore[assignment]
    julia_name: ClassVar[str] = "ABM54"


def _check_max_order(max_order: object) -> None:
    if isinstance(max_order, bool) or not isinstance(max_order, int) or not 1 <= max_order <= 12:
        raise InputError(f"max_order must be an integer from 1 to 12 (torchdiffeq's range), got {max_order!r}; "
                         "below 4 every step is a 3/8-rule Runge-Kutta step")


@dataclass(frozen=True, repr=False)
class AdamsBashforth(AdamsAlgorithm):
    """torchdiffeq's ``AdamsBashforth`` ('explicit_adams'): two 3/8-rule RK4 steps, then the ``k``-step
    Adams-Bashforth formula with ``k`` the number of known ``f`` values, from 3 up to ``max_order - 1``.

    Args:
        max_order: torchdiffeq's option (1..12, default 12); below 4 every step is a 3/8-rule step.
    """

    max_order: int = 12

    def __post_init__(self) -> None:
        _check_max_order(self.max_order)

    @property
    def tableau(self) -> Tableau:
        return _adams.torchdiffeq_adams(False, self.max_order)  # type: ignore[return-value]


@dataclass(frozen=True, repr=False)
class AdamsBashforthMoulton(AdamsAlgorithm):
    """torchdiffeq's ``AdamsBashforthMoulton`` ('implicit_adams', 'fixed_adams'): :class:`AdamsBashforth`'s
    predictor corrected by the Adams-Moulton formula one order higher, iterated (``f`` at the end point) until two
    increments agree to ``atol + rtol max(|dy|)`` componentwise, at most ``max_iters`` times; when it does not
    converge it warns and forgets the oldest value of ``f`` (torchdiffeq's rule).

    Args:
        max_order: as :class:`AdamsBashforth` (the corrector has order up to ``max_order``).
        max_iters: corrector iterations per step (>= 1, default 4).
    """

    max_order: int = 12
    max_iters: int = 4

    def __post_init__(self) -> None:
        _check_max_order(self.max_order)
        if isinstance(self.max_iters, bool) or not isinstance(self.max_iters, int) or self.max_iters < 1:
            raise InputError(f"max_iters must be a positive integer, got {self.max_iters!r}")

    @property
    def tableau(self) -> Tableau:
        return _adams.torchdiffeq_adams(True, self.max_order)  # type: ignore[return-value]


ADAMS_ALGORITHMS: dict[str, type[AdamsAlgorithm]] = {
    c.__name__: c for c in (AB3, AB4, AB5, ABM32, ABM43, ABM54, AdamsBashforth, AdamsBashforthMoulton)}
