"""Variable-order multistep methods: ``FBDF()`` (backward differentiation formulas) and ``QNDF()`` (numerical
differentiation formulas), orders 1-5, for stiff problems and index-1 DAEs with a constant mass matrix.

``QNDF`` runs on :mod:`pysciml.engine.bdf` (the method: backward differences, simplified Newton with the Jacobian
and its factorization reused across steps, order selection), ``FBDF`` on :mod:`pysciml.engine.bdf_flc` (the same
Newton iteration on past values at their times), both on :mod:`pysciml.engine.bdf_loop` (the loop). What a user
should know:

* One Jacobian is reused over many steps (renewed when Newton fails or converges slowly), and one factorization of
  ``M - (h / alpha_k) J`` until a step-size or order change moves ``h / alpha_k`` by more than 20 %: on the classic
  stiff problems they needed 6-26x fewer Jacobians and 1.2-12x fewer LUs than Rodas5P (one of each per step) and
  1.4-3.0 ``f`` calls per accepted step (``docs/benchmarks.md``, ``benchmarks/results/stiff_bdf.md``).
* Events (``callback=``) and odeint's step callbacks are not supported.
* ``QNDF`` uses the quasi-constant step-size form (the differences are re-expressed on the new spacing when the
  step changes: Shampine & Reichelt 1997; SciPy's ``BDF``, MATLAB's ``ode15s``; OrdinaryDiffEq.jl's ``QNDF``).
  ``FBDF`` is the fixed-leading-coefficient form, as OrdinaryDiffEq.jl's ``FBDF`` (past values kept at their
  actual times, a step-size decision after every step: :mod:`pysciml.engine.bdf_flc`); ``QBDF`` is the BDFs in
  the quasi-constant form (what ``FBDF`` was before). ``backend="julia"`` runs OrdinaryDiffEqBDF's FBDF and QNDF with
  ``max_order``, ``max_newton_iters`` (``NLNewton``'s ``max_iter``) and ``linsolve``; it refuses fixed steps
  (OrdinaryDiffEq changes their order only in the adaptive step controller).
* A batch of trajectories shares the step size and the order (error norm: the largest over the batch).
* Fixed steps (``adaptive=False, dt=...``) run at order ``max_order`` throughout, started by ``max_order`` Rodas5P
  steps of the same size.
* ``controller=`` does not apply (the step and order rules are the method's own).
* ``compile=True``: an adaptive ``FBDF``, ``QNDF`` or ``QBDF`` solve in float64 or float32 saving at ``saveat``
  (dense LU, autodiff or supplied Jacobian; one trajectory or a batch; ``tstops``) runs its whole loop as one
  compiled program with the eager solve's steps and counters (:mod:`pysciml.engine.compiled_loop_bdf`; QNDF's and
  QBDF's in :mod:`pysciml.engine.compiled_bdf_qndf`). In float32 a step decision may differ from the eager
  solve's (the compiled float32 arithmetic, and the program's forward-mode autodiff Jacobian against the eager
  reverse-mode one, round differently): the values then agree to the tolerance, not to round-off. Every other BDF
  solve runs eagerly after a warning that says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .algorithms import ImplicitAlgorithm
from .engine.bdf import BDF_KAPPA, MAX_ORDER, NDF_KAPPA
from .errors import InputError

__all__ = ["BDFAlgorithm", "FBDF", "QBDF", "QNDF"]


@dataclass(frozen=True, repr=False)
class BDFAlgorithm(ImplicitAlgorithm):
    """A variable-order multistep method (capability type: it runs on the multistep loop, not a stepper).

    Args:
        max_order: the highest order used, 1..5 (also the order of fixed-step solves).
        max_newton_iters: simplified-Newton iterations per step before the step is retried (fresh Jacobian, then
            half the step).
        autodiff, linsolve: as for every implicit method (:class:`~pysciml.algorithms.ImplicitAlgorithm`).
    """

    max_order: int = MAX_ORDER
    max_newton_iters: int = 4
    #: the per-order coefficients kappa_1..kappa_5 of the formulas (0: BDF)
    kappa: ClassVar[tuple[float, ...]] = BDF_KAPPA
    #: True: the fixed-leading-coefficient form (:mod:`pysciml.engine.bdf_flc`); False: the quasi-constant step-size
    #: form (:mod:`pysciml.engine.bdf`)
    fixed_leading_coefficient: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.max_order, bool) or not isinstance(self.max_order, int) or not 1 <= self.max_order <= 5:
            raise InputError(f"max_order must be an integer in 1..5 (the BDF/NDF orders), got {self.max_order!r}")
        if isinstance(self.max_newton_iters, bool) or not isinstance(self.max_newton_iters, int) \
                or self.max_newton_iters < 1:
            raise InputError(f"max_newton_iters must be a positive integer, got {self.max_newton_iters!r}")

    @property
    def order(self) -> int:
        return self.max_order

    @property
    def interpolant_order(self) -> int:
        """The dense output is the step's interpolating polynomial, of the step's order."""
        return self.max_order

    @property
    def is_adaptive(self) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class FBDF(BDFAlgorithm):
    """Backward differentiation formulas of orders 1-5, variable order and step, in the fixed-leading-coefficient
    form (as OrdinaryDiffEq.jl's ``FBDF`` and DASSL): the past values stay at their actual times, and the Newton
    matrix ``M - (h / alpha_k) J`` depends only on ``h`` and ``k`` (:mod:`pysciml.engine.bdf_flc`). Orders 1 and 2
    are L-stable; 3-5 are A(alpha)-stable (alpha = 86.0, 73.4, 51.8 degrees: Hairer & Wanner II, Table V.2.3), so
    strongly oscillatory stiff modes are better served by Rodas5P or KenCarp4."""

    julia_name: ClassVar[str] = "FBDF"
    kappa: ClassVar[tuple[float, ...]] = BDF_KAPPA
    fixed_leading_coefficient: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class QBDF(BDFAlgorithm):
    """The BDFs of orders 1-5 in the quasi-constant step-size form (``QNDF``'s method with ``kappa = 0``, as
    OrdinaryDiffEq's ``QBDF``): what ``FBDF`` ran before it took the fixed-leading-coefficient form, kept for
    comparison (``pysciml.algorithms_bdf.QBDF``; not routed to the Julia engine)."""

    julia_name: ClassVar[str] = ""
    kappa: ClassVar[tuple[float, ...]] = BDF_KAPPA


@dataclass(frozen=True, repr=False)
class QNDF(BDFAlgorithm):
    """Numerical differentiation formulas of orders 1-5 (Klopfenstein; Shampine & Reichelt's ``kappa = (-0.1850,
    -1/9, -0.0823, -0.0415, 0)``, the formulas of MATLAB's ``ode15s``). Their error constants ``kappa_k gamma_k +
    1/(k+1)`` are 0.315, 0.167, 0.099, 0.114 at orders 1-4 against the BDFs' 0.5, 0.333, 0.25, 0.2; Shampine &
    Reichelt (1997, Table 1) give the gain as a 26 % larger step at orders 1-3 and 12 % at order 4, for stability
    angles of 90, 90, 80, 66 degrees (BDF: 90, 90, 86, 73); order 5 is BDF5."""

    julia_name: ClassVar[str] = "QNDF"
    kappa: ClassVar[tuple[float, ...]] = NDF_KAPPA
