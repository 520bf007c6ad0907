"""The algorithm and sensitivity-algorithm mappings to Julia are complete and name things that exist.

Checked against the parsed PySciML.jl source: each Julia name must be a key of the package's algorithm
tables and be imported from a package declared in Project.toml.
"""

from __future__ import annotations

import pytest
from test_julia_static import julia_source, project_toml

from pysciml import algorithms, sensealg
from pysciml.algorithms import (
    ALGORITHMS,
    Algorithm,
    ESDIRKAlgorithm,
    ExplicitAlgorithm,
    IMEXAlgorithm,
    ImplicitAlgorithm,
)
from pysciml.algorithms_bdf import BDFAlgorithm
from pysciml.algorithms_firk import FIRKAlgorithm
from pysciml.errors import InputError
from pysciml.julia import JULIA_ALGORITHMS, JULIA_SENSEALGS, JULIA_UNSUPPORTED_SENSEALGS
from pysciml.julia._mapping import (
    ALL_ALGORITHMS,
    SENSEALG_CLASSES,
    algorithm_options,
    check_julia_solve,
    julia_algorithm,
    julia_sensealg,
)
from pysciml.linsolve_options import GMRES, SparseLU


def _concrete_algorithm_classes() -> set[type]:
    """Every algorithm class defined in pysciml.algorithms that names a tableau (a runnable method)."""
    return {obj for obj in vars(algorithms).values()
            if isinstance(obj, type) and issubclass(obj, Algorithm) and obj._tableau}


def _imported_names() -> set[str]:
    src = julia_source()
    declared = set(project_toml()["deps"])
    return set().union(*(names for pkg, names in src.imports.items() if pkg in declared))


def test_every_algorithm_has_a_julia_name():
    classes = _concrete_algorithm_classes()
    assert classes == set(ALGORITHMS.values()), "ALGORITHMS must list every concrete algorithm"
    for cls in classes:
        assert cls.julia_name, f"{cls.__name__} has no julia_name"
        assert JULIA_ALGORITHMS[cls.__name__] == cls.julia_name
        assert julia_algorithm(cls()) == cls.julia_name


# pysciml class -> OrdinaryDiffEq name, checked against OrdinaryDiffEq.jl's sources (lib/OrdinaryDiffEqFIRK,
# lib/OrdinaryDiffEqBDF, lib/OrdinaryDiffEqAdamsBashforthMoulton: algorithms.jl and the exports, v2.x).
NEW_FAMILIES = {
    "RadauIIA5": "RadauIIA5", "RadauIIA3": "RadauIIA3", "GaussLegendre4": "GaussLegendre",
    "GaussLegendre6": "GaussLegendre", "FBDF": "FBDF", "QNDF": "QNDF", "AB3": "AB3", "AB4": "AB4", "AB5": "AB5",
    "ABM32": "ABM32", "ABM43": "ABM43", "ABM54": "ABM54",
}


def test_firk_bdf_and_adams_methods_map_to_their_ordinarydiffeq_names():
    from pysciml.algorithms_native import NATIVE_ALGORITHMS

    for name, julia_name in NEW_FAMILIES.items():
        assert JULIA_ALGORITHMS[name] == julia_name
        assert julia_algorithm(ALL_ALGORITHMS[name]()) == julia_name
    # everything else with a Julia name is an ALGORITHMS class; the rest is refused (native, torchdiffeq's Adams)
    unrouted = set(NATIVE_ALGORITHMS) | {"AdamsBashforth", "AdamsBashforthMoulton"}
    assert set(JULIA_ALGORITHMS) == set(ALL_ALGORITHMS) - unrouted == set(ALGORITHMS) | set(NEW_FAMILIES)
    for name in unrouted:
        with pytest.raises(InputError, match=rf"{name}\(\) has no Julia counterpart.*backend='torch'"):
            julia_algorithm(ALL_ALGORITHMS[name]())


def test_julia_names_exist_in_the_julia_package():
    src = julia_source()
    tables = src.string_keys("EXPLICIT_ALGORITHMS") | src.string_keys("IMPLICIT_ALGORITHMS")
    assert set(JULIA_ALGORITHMS.values()) == tables, "PySciML.jl's tables and pysciml's algorithms differ"
    imported = _imported_names()
    for name in JULIA_ALGORITHMS.values():
        assert name in imported, f"{name} is not imported from an OrdinaryDiffEq package in PySciML.jl"


def test_julia_tables_split_explicit_and_implicit_like_python():
    src = julia_source()
    explicit = src.string_keys("EXPLICIT_ALGORITHMS")
    routed = {name: cls for name, cls in ALL_ALGORITHMS.items() if cls.julia_name}
    for name, cls in routed.items():
        assert (cls.julia_name in explicit) == (not issubclass(cls, ImplicitAlgorithm)), name
    for name, cls in ALGORITHMS.items():
        assert issubclass(cls, ImplicitAlgorithm) != issubclass(cls, ExplicitAlgorithm), name
    assert src.string_keys("FIRK_ALGORITHMS") == {c.julia_name for c in routed.values() if issubclass(c, FIRKAlgorithm)}
    assert src.string_keys("BDF_ALGORITHMS") == {c.julia_name for c in routed.values() if issubclass(c, BDFAlgorithm)}
    imex = {cls.julia_name for cls in ALGORITHMS.values() if issubclass(cls, IMEXAlgorithm)}
    assert src.string_keys("IMEX_ALGORITHMS") == imex
    esdirk = {cls.julia_name for cls in ALGORITHMS.values() if issubclass(cls, ESDIRKAlgorithm)}
    assert src.string_keys("NEWTON_ALGORITHMS") == esdirk


def test_every_sensealg_is_mapped_or_explained():
    classes = {obj for obj in vars(sensealg).values()
               if isinstance(obj, type) and issubclass(obj, sensealg.SensitivityAlgorithm)
               and obj is not sensealg.SensitivityAlgorithm}
    assert set(SENSEALG_CLASSES.values()) == classes
    for cls in classes:
        name = cls.__name__
        mapped, unsupported = name in JULIA_SENSEALGS, name in JULIA_UNSUPPORTED_SENSEALGS
        assert mapped != unsupported, f"{name} must be either mapped or listed as unsupported"
        if mapped:
            assert JULIA_SENSEALGS[name] == cls.julia_name
        else:
            assert not cls.julia_name and len(JULIA_UNSUPPORTED_SENSEALGS[name]) > 40


def test_sensealg_names_exist_in_the_julia_package():
    src = julia_source()
    assert set(JULIA_SENSEALGS.values()) == src.returned_strings("sensealg_names")
    imported = src.imports["SciMLSensitivity"]
    for name in JULIA_SENSEALGS.values():
        assert name in imported
    assert "adjoint_sensitivities" in imported


def test_unsupported_sensealg_raises_with_the_reason():
    with pytest.raises(InputError, match="DiscreteAdjoint.*backend='torch'"):
        julia_sensealg(sensealg.DiscreteAdjoint())
    with pytest.raises(InputError, match="sensitivity algorithm"):
        julia_sensealg("InterpolatingAdjoint")  # type: ignore[arg-type]


def test_sensealg_options():
    assert julia_sensealg(sensealg.InterpolatingAdjoint(checkpointing=True)) == (
        "InterpolatingAdjoint", {"checkpointing": True})
    # QuadratureAdjoint's tolerances depend on the solve as well: pysciml.julia._arguments.adjoint_settings
    assert julia_sensealg(sensealg.QuadratureAdjoint(abstol=1e-9, reltol=1e-7)) == ("QuadratureAdjoint", {})
    assert julia_sensealg(sensealg.BacksolveAdjoint())[1] == {"checkpointing": True}
    assert julia_sensealg(sensealg.GaussAdjoint()) == ("GaussAdjoint", {"checkpointing": False})


def test_algorithm_options():
    assert algorithm_options(algorithms.Tsit5()) == {}
    assert algorithm_options(algorithms.Rodas5P()) == {"linsolve": "lu"}
    assert algorithm_options(algorithms.Rodas5P(linsolve=GMRES(restart=12))) == {
        "linsolve": "gmres", "restart": 12, "gmres_rtol": 1e-10, "gmres_itmax": 120}
    assert algorithm_options(algorithms.KenCarp4(max_newton_iters=7, newton_kappa=0.05)) == {
        "linsolve": "lu", "newton_kappa": 0.05, "max_newton_iters": 7, "smooth_est": False}
    # the native Newton defaults are Julia's NLNewton defaults (kappa = 1//100, max_iter = 10)
    assert algorithm_options(algorithms.Kvaerno5())["newton_kappa"] == 0.01
    assert algorithm_options(algorithms.Kvaerno5())["max_newton_iters"] == 10


def test_firk_and_bdf_options():
    """FIRK: OrdinaryDiffEqFIRK's maxiters, kappa (only when given: radau5's rtol-dependent default has no counterpart,
    OrdinaryDiffEq's 1/100 applies) and the Jacobian-reuse threshold; GaussLegendre4/6 by num_stages. BDF: max_order
    and the Newton budget. Adams: nothing to send."""
    from pysciml.algorithms_adams import ABM54
    from pysciml.algorithms_bdf import FBDF, QNDF
    from pysciml.algorithms_firk import GaussLegendre4, GaussLegendre6, RadauIIA3, RadauIIA5

    assert algorithm_options(RadauIIA5()) == {"linsolve": "lu", "max_newton_iters": 7, "jac_reuse": 1e-3}
    assert algorithm_options(RadauIIA3(newton_kappa=0.05, max_newton_iters=9, jac_reuse=0.0)) == {
        "linsolve": "lu", "max_newton_iters": 9, "jac_reuse": 0.0, "newton_kappa": 0.05}
    assert algorithm_options(GaussLegendre4())["num_stages"] == 2
    assert algorithm_options(GaussLegendre6())["num_stages"] == 3
    assert "num_stages" not in algorithm_options(RadauIIA5())
    assert algorithm_options(FBDF(max_order=3)) == {"linsolve": "lu", "max_order": 3, "max_newton_iters": 4}
    assert algorithm_options(QNDF(linsolve=GMRES(restart=5), max_newton_iters=6)) == {
        "linsolve": "gmres", "restart": 5, "gmres_rtol": 1e-10, "gmres_itmax": 50, "max_order": 5,
        "max_newton_iters": 6}
    assert algorithm_options(ABM54()) == {}
    with pytest.raises(InputError, match="sparse"):
        algorithm_options(FBDF(linsolve=SparseLU()))


def test_qndf_kappa_is_ordinarydiffeqs_default():
    """PySciML.jl leaves QNDF's ``kappa`` at OrdinaryDiffEq's default, (-37/200, -1/9, -823/10000, -83/2000, 0)
    (lib/OrdinaryDiffEqBDF/src/algorithms.jl), so both engines use the same formulas only if pysciml's are these."""
    from pysciml.algorithms_bdf import QNDF

    assert QNDF.kappa == pytest.approx((-37 / 200, -1 / 9, -823 / 10000, -83 / 2000, 0.0), abs=1e-15)


def test_what_ordinarydiffeq_would_solve_differently_is_refused_before_julia_starts():
    """FBDF/QNDF with fixed steps (OrdinaryDiffEq would stay at order 1) and GaussLegendre4/6 with a mass matrix
    (OrdinaryDiffEq's GaussLegendre ignores it): solve(..., backend="julia") raises an InputError naming the reason
    and the way out, before Julia is started (where Julia is missing it would raise JuliaNotAvailableError)."""
    import torch

    import pysciml as ps

    one = torch.ones(2, dtype=torch.float64)
    plain = ps.ODEProblem(lambda t, u: -u, one, (0.0, 1.0))
    with_mass = ps.ODEProblem(lambda t, u: -u, one, (0.0, 1.0), mass_matrix=torch.eye(2, dtype=torch.float64))
    for alg in (ps.FBDF(), ps.QNDF(max_order=2)):
        with pytest.raises(ps.InputError, match=r"adaptive=False.*order 1.*backend='torch'"):
            ps.solve(plain, alg, adaptive=False, dt=0.1, backend="julia")
        check_julia_solve(alg, adaptive=True, mass_matrix=True)  # adaptive BDF with M: both engines
    for alg in (ps.GaussLegendre4(), ps.GaussLegendre6()):
        with pytest.raises(ps.InputError, match=r"mass_matrix.*ignores the mass matrix.*backend='torch'"):
            ps.solve(with_mass, alg, dt=0.1, backend="julia")
        check_julia_solve(alg, adaptive=False, mass_matrix=False)
    check_julia_solve(ps.RadauIIA5(), adaptive=True, mass_matrix=True)
    for cls in (ps.AdamsBashforth, ps.AdamsBashforthMoulton):
        with pytest.raises(ps.InputError, match=rf"{cls.__name__}\(\) has no Julia counterpart.*backend='torch'"):
            ps.solve(plain, cls(), dt=0.1, backend="julia")


def test_esdirk_smooth_est_is_always_sent():
    """OrdinaryDiffEq's KenCarp3/4/5 and Kvaerno5 default to smooth_est = true, pysciml's to False: the
    option must reach Julia whatever its value, or the two engines control the error differently."""
    for cls in (algorithms.KenCarp3, algorithms.KenCarp4, algorithms.KenCarp5, algorithms.Kvaerno5):
        assert algorithm_options(cls())["smooth_est"] is False
        assert algorithm_options(cls(smooth_est=True))["smooth_est"] is True


def test_gmres_tolerance_and_budget_follow_the_native_gmres():
    """Krylov.jl's ``itmax`` counts iterations, pysciml's ``maxiter`` counts restart cycles; the residual
    tolerance is floored at 100 eps of the state's dtype, as natively."""
    alg = algorithms.Rodas5P(linsolve=GMRES(rtol=1e-6, restart=8, maxiter=5))
    opts = algorithm_options(alg)
    assert (opts["restart"], opts["gmres_rtol"], opts["gmres_itmax"]) == (8, 1e-6, 40)
    eps32 = 2.0**-23
    tight = algorithm_options(algorithms.KenCarp4(linsolve=GMRES(rtol=1e-10)), eps32)
    assert tight["gmres_rtol"] == pytest.approx(100 * eps32)
    assert algorithm_options(algorithms.KenCarp4(linsolve=GMRES(rtol=1e-10)))["gmres_rtol"] == 1e-10


def test_native_only_algorithms_are_refused_by_the_julia_engine_with_a_clear_error():
    """IMEXSSP2 and ARS222 (SINODE's second-order pairs) and RKF12, Heun3, Alexander2 (torchdiffeq's fehlberg2,
    heun3, sdirk2) exist only in the torch engine: asking the Julia engine for them fails before Julia is started,
    naming the algorithm and the way out."""
    import torch

    import pysciml as ps
    from pysciml.algorithms_native import NATIVE_ALGORITHMS

    split = ps.SplitODEProblem(-torch.eye(2, dtype=torch.float64), lambda t, u: 0 * u,
                               torch.ones(2, dtype=torch.float64), (0.0, 1.0))
    plain = ps.ODEProblem(lambda t, u: -u, torch.ones(2, dtype=torch.float64), (0.0, 1.0))
    assert {"IMEXSSP2", "ARS222", "RKF12", "Heun3", "Alexander2"} <= set(NATIVE_ALGORITHMS)
    for cls in NATIVE_ALGORITHMS.values():
        prob = split if issubclass(cls, IMEXAlgorithm) else plain
        with pytest.raises(ps.InputError, match=rf"{cls.__name__}\(\) has no Julia counterpart.*backend='torch'"):
            ps.solve(prob, cls(), dt=0.1, backend="julia")


# OrdinaryDiffEq.jl's symplectic tableaus (OrdinaryDiffEqSymplecticRK, symplectic_tableaus.jl), in its convention:
# each stage kicks with b_i, then drifts with a_i (PseudoVerletLeapfrog's a = (1, 0), b = (1/2, 1/2) is velocity
# Verlet only in this order). VelocityVerlet and LeapfrogDriftKickDrift have their own perform_step there; written
# here in the same form. CandyRoz4 is given as formulas, Yoshida6 to 14 digits, McAte5 to 19.
_C3 = 2.0 ** (1.0 / 3.0)
_Y6A = (0.78451361047756, 0.23557321335936, -1.1776799841789, 1.3151863206839, -1.1776799841789, 0.23557321335936,
        0.78451361047756, 0.0)
_Y6B = (0.39225680523878, 0.51004341191846, -0.47105338540976, 0.068753168252520, 0.068753168252520,
        -0.47105338540976, 0.51004341191846, 0.39225680523878)
ORDINARYDIFFEQ_TABLEAUS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {  # name: (a = drifts, b = kicks)
    "VelocityVerlet": ((1.0, 0.0), (0.5, 0.5)),
    "LeapfrogDriftKickDrift": ((0.5, 0.5), (0.0, 1.0)),
    "CandyRoz4": (((2 + _C3 + 1 / _C3) / 6, (1 - _C3 - 1 / _C3) / 6, (1 - _C3 - 1 / _C3) / 6, (2 + _C3 + 1 / _C3) / 6),
                  (0.0, 1 / (2 - _C3), 1 / (1 - _C3**2), 1 / (2 - _C3))),
    "Yoshida6": (_Y6A, _Y6B),
    "McAte5": ((0.339839625839110000, -0.088601336903027329, 0.5858564768259621188, -0.603039356536491888,
                0.3235807965546976394, 0.4423637942197494587),
               (0.1193900292875672758, 0.6989273703824752308, -0.1713123582716007754, 0.4012695022513534480,
                0.0107050818482359840, -0.0589796254980311632)),
}


def _canonical(steps: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Non-zero sub-steps with adjacent ones of the same kind merged: one method, one sequence."""
    out: list[tuple[str, float]] = []
    for kind, c in steps:
        if c == 0.0:
            continue
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + c)
        else:
            out.append((kind, c))
    return out


def test_symplectic_algorithms_name_their_ordinarydiffeq_counterparts():
    """Each symplectic class's ``julia_name`` is the OrdinaryDiffEq method with the same sequence of kicks and
    drifts (to the 14 digits OrdinaryDiffEq gives Yoshida6), so the names promise the same numbers; they are kept
    apart from JULIA_ALGORITHMS (PySciML.jl's tables, which do not route them yet)."""
    from pysciml.algorithms_symplectic import SYMPLECTIC_ALGORITHMS, ExplicitSymplecticAlgorithm
    from pysciml.julia._mapping import JULIA_SYMPLECTIC_ALGORITHMS

    assert JULIA_SYMPLECTIC_ALGORITHMS == {
        "VelocityVerlet": "VelocityVerlet", "Leapfrog": "LeapfrogDriftKickDrift", "Yoshida4": "CandyRoz4",
        "Yoshida6": "Yoshida6", "McAte5": "McAte5", "ImplicitMidpoint": "ImplicitMidpoint"}
    assert not set(JULIA_SYMPLECTIC_ALGORITHMS) & set(JULIA_ALGORITHMS)
    for name, cls in SYMPLECTIC_ALGORITHMS.items():
        if not issubclass(cls, ExplicitSymplecticAlgorithm):
            continue
        a, b = ORDINARYDIFFEQ_TABLEAUS[cls.julia_name]
        theirs = _canonical([s for ai, bi in zip(a, b, strict=True) for s in (("kick", bi), ("drift", ai))])
        ours = _canonical(cls().tableau.substeps())
        assert [k for k, _ in ours] == [k for k, _ in theirs], name
        assert [c for _, c in ours] == pytest.approx([c for _, c in theirs], rel=1e-12, abs=1e-13), name


def test_symplectic_algorithms_and_problems_are_refused_by_the_julia_engine():
    """Not routed yet: julia_algorithm refuses a symplectic method, and solve(..., backend="julia") refuses the
    partitioned problems (with any algorithm) with an InputError, before Julia is started (where Julia is missing,
    starting it would raise JuliaNotAvailableError instead)."""
    import torch

    import pysciml as ps

    for cls in (ps.VelocityVerlet, ps.Leapfrog, ps.Yoshida4, ps.Yoshida6, ps.McAte5, ps.ImplicitMidpoint):
        with pytest.raises(InputError, match=r"Julia engine does not solve .*backend='torch'"):
            julia_algorithm(cls())
    one = torch.ones(1, dtype=torch.float64)
    ham = ps.HamiltonianProblem(lambda q, p: 0.5 * (q**2 + p**2).sum(-1), one, 0 * one, (0.0, 1.0), separable=True)
    second = ps.SecondOrderODEProblem(lambda t, x, v: -x, one, 0 * one, (0.0, 1.0))
    plain = ps.ODEProblem(lambda t, u: -u, one, (0.0, 1.0))
    for prob, alg in ((ham, ps.Tsit5()), (second, ps.Rodas5P()), (ham, ps.Yoshida4()), (plain, ps.ImplicitMidpoint())):
        with pytest.raises(ps.InputError, match=r"backend='julia' does not solve .*backend='torch'"):
            ps.solve(prob, alg, dt=0.1, backend="julia")
