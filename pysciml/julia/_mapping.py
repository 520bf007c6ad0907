"""Names and options of algorithms and sensitivity algorithms on the Julia side.

Built from the ``julia_name`` of every class, so the mapping is complete by construction; a sensitivity algorithm
without a Julia counterpart must be listed in :data:`JULIA_UNSUPPORTED_SENSEALGS` with the reason, and an algorithm
without one (the native-only methods and torchdiffeq's Adams methods) has ``julia_name = ""`` and is refused
(tests check both). The symplectic methods carry their OrdinaryDiffEq names too
(:data:`JULIA_SYMPLECTIC_ALGORITHMS`; ``tests/test_julia_mapping.py`` checks that each names the same sequence of
kicks and drifts) but are not routed to the Julia engine yet. Starts no Julia (torch is imported only through
:mod:`pysciml.algorithms_symplectic`'s problem checks).
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import sensealg as _sensealg
from ..algorithms import ALGORITHMS, Algorithm, ESDIRKAlgorithm, ImplicitAlgorithm
from ..algorithms_adams import ADAMS_ALGORITHMS
from ..algorithms_bdf import FBDF, QNDF, BDFAlgorithm
from ..algorithms_firk import FIRK_ALGORITHMS, FIRKAlgorithm
from ..algorithms_native import NATIVE_ALGORITHMS
from ..algorithms_symplectic import SYMPLECTIC_ALGORITHMS, SymplecticAlgorithm
from ..errors import InputError
from ..linsolve_options import GMRES, SparseLU
from ..sensealg import CheckpointingAdjoint, SensitivityAlgorithm

__all__ = [
    "ALL_ALGORITHMS", "DOUBLE_EPS", "JULIA_ALGORITHMS", "JULIA_SYMPLECTIC_ALGORITHMS",
    "JULIA_SENSEALGS", "JULIA_UNSUPPORTED_SENSEALGS", "SENSEALG_CLASSES",
    "algorithm_options", "check_julia_solve", "julia_algorithm", "julia_sensealg",
]

ALL_ALGORITHMS: dict[str, type] = {
    **ALGORITHMS, **FIRK_ALGORITHMS, **{c.__name__: c for c in (FBDF, QNDF)}, **ADAMS_ALGORITHMS, **NATIVE_ALGORITHMS}
"""Every non-symplectic pysciml algorithm class, by name (those with a Julia counterpart and those without)."""

JULIA_ALGORITHMS: dict[str, str] = {name: cls.julia_name for name, cls in ALL_ALGORITHMS.items() if cls.julia_name}
"""pysciml algorithm class name -> OrdinaryDiffEq algorithm name (GaussLegendre4 and GaussLegendre6 both map to
``GaussLegendre``, told apart by ``num_stages``)."""

JULIA_SYMPLECTIC_ALGORITHMS: dict[str, str] = {name: cls.julia_name for name, cls in SYMPLECTIC_ALGORITHMS.items()}
"""pysciml symplectic algorithm -> its OrdinaryDiffEq counterpart (``OrdinaryDiffEqSymplecticRK``: VelocityVerlet,
LeapfrogDriftKickDrift, CandyRoz4 = Yoshida4, McAte5, Yoshida6; ``OrdinaryDiffEqSDIRK``: ImplicitMidpoint). Not yet
routed: the Julia engine would need a ``DynamicalODEProblem``, so :func:`julia_algorithm` refuses them."""

SYMPLECTIC_NOT_ROUTED = (
    "the Julia engine does not solve HamiltonianProblem / SecondOrderODEProblem or the symplectic methods yet (they "
    "need OrdinaryDiffEq's DynamicalODEProblem); use backend='torch'"
)

SENSEALG_CLASSES: dict[str, type[SensitivityAlgorithm]] = {
    name: cls for name, cls in inspect.getmembers(_sensealg, inspect.isclass)
    if issubclass(cls, SensitivityAlgorithm) and cls is not SensitivityAlgorithm
}
"""Every sensitivity algorithm class of :mod:`pysciml.sensealg`, by name."""

JULIA_SENSEALGS: dict[str, str] = {
    name: cls.julia_name for name, cls in SENSEALG_CLASSES.items() if cls.julia_name
}
"""pysciml sensitivity algorithm class name -> SciMLSensitivity type name."""

JULIA_UNSUPPORTED_SENSEALGS: dict[str, str] = {
    "DiscreteAdjoint": (
        "DiscreteAdjoint backpropagates through the solver's own steps, which for the Julia engine are "
        "Julia code calling a Python f: SciMLSensitivity's discrete adjoints (ReverseDiffAdjoint, "
        "ZygoteAdjoint, ...) differentiate Julia code and cannot see through Python. Use a continuous "
        "adjoint (InterpolatingAdjoint, QuadratureAdjoint, GaussAdjoint, BacksolveAdjoint) with "
        "backend='julia', or DiscreteAdjoint with backend='torch'"
    ),
}
"""Sensitivity algorithms without a Julia-engine counterpart, with the reason."""


def julia_algorithm(alg: Algorithm) -> str:
    """The OrdinaryDiffEq name of ``alg`` (raises :class:`InputError` if it has none)."""
    if isinstance(alg, SymplecticAlgorithm):
        raise InputError(f"{alg!r}: {SYMPLECTIC_NOT_ROUTED}")
    name = getattr(type(alg), "julia_name", "")
    if not name:
        raise InputError(f"{alg!r} has no Julia counterpart; use backend='torch'")
    return name


def check_julia_solve(alg: Algorithm, *, adaptive: bool, mass_matrix: bool) -> None:
    """Refuse what OrdinaryDiffEq would solve differently from pysciml, before Julia is started.

    * FBDF/QNDF with fixed steps: pysciml runs them at ``max_order`` throughout; OrdinaryDiffEqBDF changes their
      order only in its adaptive step controller, so a fixed-step solve would stay at order 1.
    * GaussLegendre4/6 with a mass matrix: OrdinaryDiffEqFIRK's ``GaussLegendre`` builds its Newton matrix as
      ``I - dt A (x) J`` and never reads the mass matrix, so the solve would ignore ``M``.

    Raises:
        InputError: one of the above (the message names the way out).
    """
    if isinstance(alg, BDFAlgorithm) and not adaptive:
        raise InputError(f"{alg!r} with adaptive=False: pysciml's fixed-step {alg.name} runs at max_order, "
                         f"OrdinaryDiffEq's changes its order only in the adaptive controller (it would stay at "
                         f"order 1); use backend='torch' for fixed steps, or adaptive=True")
    if isinstance(alg, FIRKAlgorithm) and julia_algorithm(alg) == "GaussLegendre" and mass_matrix:
        raise InputError(f"{alg!r} with a mass_matrix: OrdinaryDiffEq's GaussLegendre ignores the mass matrix; use "
                         "backend='torch', or RadauIIA5() which reads it on both engines")


DOUBLE_EPS = 2.0**-52
"""Machine epsilon of float64, the default state dtype."""


def algorithm_options(alg: Algorithm, eps: float = DOUBLE_EPS) -> dict[str, Any]:
    """Keyword options of PySciML.jl's ``make_algorithm`` for ``alg`` (every option the algorithm has).

    * implicit methods: ``linsolve`` (``DenseLU()`` -> ``"lu"``, ``GMRES(...)`` -> ``"gmres"``; ``SparseLU()`` and
      a preconditioned ``GMRES`` are refused: PySciML.jl has neither); with GMRES
      also ``restart``, ``gmres_rtol`` (``GMRES.rtol`` raised to ``100 eps`` of the state's dtype, as the
      native GMRES does; ``eps`` is that dtype's machine epsilon) and ``gmres_itmax`` (Krylov.jl counts
      iterations, pysciml's ``maxiter`` counts restart cycles: ``maxiter * restart``);
    * ESDIRK methods: ``newton_kappa``, ``max_newton_iters`` (``NLNewton``) and ``smooth_est`` (sent
      always: OrdinaryDiffEq's default is ``true``, pysciml's ``False``);
    * FIRK methods: ``max_newton_iters`` (OrdinaryDiffEqFIRK's ``maxiters``), ``jac_reuse`` (becomes its
      ``fast_convergence_cutoff``), ``newton_kappa`` (its ``κ``) unless ``None``: radau5's rtol-dependent default has
      no counterpart there and OrdinaryDiffEqFIRK's own ``κ = 1/100`` applies; GaussLegendre4/6 send ``num_stages``
      (2/3). RadauIIA5's embedded estimate is filtered on both engines (OrdinaryDiffEq's ``smooth_est = true``);
    * FBDF/QNDF: ``max_order`` (a ``Val`` in Julia) and ``max_newton_iters`` (``NLNewton``'s ``max_iter``);
    * Adams methods (AB3 ... ABM54): none (OrdinaryDiffEq's constructors take none that pysciml has).

    ``autodiff`` needs no mapping: Julia never differentiates the Python function, the Jacobian and
    the Jacobian-vector products come from torch (forward-mode autodiff or, with ``autodiff=False``,
    finite differences in torch), through the ``ODEFunction``'s ``jac`` and ``jvp`` hooks.
    """
    opts: dict[str, Any] = {}
    if isinstance(alg, ImplicitAlgorithm):
        if isinstance(alg.linsolve, SparseLU):
            raise InputError(f"{alg.name}(linsolve=SparseLU()): the Julia engine has no sparse factorisation here "
                             "(PySciML.jl sends dense Jacobians); use backend='torch' for sparse problems")
        if isinstance(alg.linsolve, GMRES) and alg.linsolve.precondition is not None:
            raise InputError(f"GMRES(precondition={alg.linsolve.precondition!r}) runs on the native engine only "
                             "(PySciML.jl's Krylov.jl GMRES is unpreconditioned); drop precondition= or use "
                             "backend='torch'")
        if isinstance(alg.linsolve, GMRES):
            gmres = alg.linsolve
            opts.update(linsolve="gmres", restart=int(gmres.restart), gmres_rtol=max(float(gmres.rtol), 100 * eps),
                        gmres_itmax=int(gmres.maxiter) * int(gmres.restart))
        else:
            opts["linsolve"] = "lu"
    if isinstance(alg, ESDIRKAlgorithm):
        opts.update(newton_kappa=float(alg.newton_kappa), max_newton_iters=int(alg.max_newton_iters),
                    smooth_est=bool(alg.smooth_est))
    elif isinstance(alg, FIRKAlgorithm):
        opts.update(max_newton_iters=int(alg.max_newton_iters), jac_reuse=float(alg.jac_reuse))
        if alg.newton_kappa is not None:
            opts["newton_kappa"] = float(alg.newton_kappa)
        if julia_algorithm(alg) == "GaussLegendre":
            opts["num_stages"] = int(alg.tableau.stages)
    elif isinstance(alg, BDFAlgorithm):
        opts.update(max_order=int(alg.max_order), max_newton_iters=int(alg.max_newton_iters))
    return opts


def julia_sensealg(sensealg: SensitivityAlgorithm) -> tuple[str, dict[str, Any]]:
    """The SciMLSensitivity name of ``sensealg`` and its structural options for ``adjoint_gradients``
    (``checkpointing``). The tolerances depend on the solve too: see
    :func:`pysciml.julia._arguments.adjoint_settings`.

    Raises:
        InputError: ``sensealg`` has no Julia counterpart (the message says why and what to use).
    """
    if not isinstance(sensealg, SensitivityAlgorithm):
        raise InputError(
            f"sensealg must be a pysciml sensitivity algorithm such as InterpolatingAdjoint(), got "
            f"{type(sensealg).__name__}"
        )
    cls_name = type(sensealg).__name__
    if cls_name in JULIA_UNSUPPORTED_SENSEALGS:
        raise InputError(f"{cls_name}() is not available with backend='julia': "
                         f"{JULIA_UNSUPPORTED_SENSEALGS[cls_name]}")
    name = type(sensealg).julia_name
    if not name:
        raise InputError(f"{cls_name}() has no SciMLSensitivity counterpart; use backend='torch'")
    opts: dict[str, Any] = {}
    if isinstance(sensealg, CheckpointingAdjoint):
        opts["checkpointing"] = bool(sensealg.checkpointing)
    return name, opts
