# Algorithm and sensitivity-algorithm names, as pysciml's `julia_name`s spell them.

"Explicit methods (Runge-Kutta and fixed-step Adams): constructed without options."
const EXPLICIT_ALGORITHMS = Dict{String, Any}(
    "Tsit5" => Tsit5, "DP5" => DP5, "BS3" => BS3, "Vern7" => Vern7,
    "RK4" => RK4, "Midpoint" => Midpoint, "Heun" => Heun, "Euler" => Euler, "Ralston" => Ralston,
    "AB3" => AB3, "AB4" => AB4, "AB5" => AB5, "ABM32" => ABM32, "ABM43" => ABM43, "ABM54" => ABM54,
)

"Methods that need Jacobians and linear solves: constructed with `autodiff` and `linsolve`."
const IMPLICIT_ALGORITHMS = Dict{String, Any}(
    "Rosenbrock23" => Rosenbrock23, "ROS3P" => ROS3P, "Rodas4" => Rodas4, "Rodas5" => Rodas5,
    "Rodas5P" => Rodas5P, "KenCarp3" => KenCarp3, "KenCarp4" => KenCarp4, "KenCarp5" => KenCarp5,
    "Kvaerno3" => Kvaerno3, "Kvaerno5" => Kvaerno5, "ImplicitEuler" => ImplicitEuler,
    "Trapezoid" => Trapezoid, "SDIRK2" => SDIRK2, "TRBDF2" => TRBDF2,
    "RadauIIA5" => RadauIIA5, "RadauIIA3" => RadauIIA3, "GaussLegendre" => GaussLegendre,
    "FBDF" => FBDF, "QNDF" => QNDF,
)

"IMEX methods: on a `SplitODEProblem` they treat `f₁` implicitly and `f₂` explicitly."
const IMEX_ALGORITHMS = ("KenCarp3", "KenCarp4", "KenCarp5")

"ESDIRK methods: their stages are solved by (simplified) Newton iterations, `NLNewton`."
const NEWTON_ALGORITHMS = (
    "KenCarp3", "KenCarp4", "KenCarp5", "Kvaerno3", "Kvaerno5", "ImplicitEuler", "Trapezoid", "SDIRK2", "TRBDF2",
)

"Newton methods whose OrdinaryDiffEq constructor has no `smooth_est` keyword (their estimate is not filtered)."
const NO_SMOOTH_EST = ("ImplicitEuler", "Trapezoid")

"Fully implicit Runge-Kutta methods (OrdinaryDiffEqFIRK): their own simplified Newton on all stages at once."
const FIRK_ALGORITHMS = ("RadauIIA5", "RadauIIA3", "GaussLegendre")

"Variable-order multistep methods (OrdinaryDiffEqBDF): `max_order` (a `Val`) and an `NLNewton` iteration."
const BDF_ALGORITHMS = ("FBDF", "QNDF")

"Names of the methods the Julia engine provides (pysciml checks its mapping against this list)."
algorithm_names() = sort!(vcat(collect(keys(EXPLICIT_ALGORITHMS)), collect(keys(IMPLICIT_ALGORITHMS))))

"""
    make_algorithm(name; linsolve = "lu", restart = 30, gmres_rtol = 1e-10, gmres_itmax = 300,
                   newton_kappa = 0.01, max_newton_iters = 10, smooth_est = false,
                   jac_reuse = 1 / 6, num_stages = 2, max_order = 5)

The OrdinaryDiffEq algorithm called `name`. Implicit methods get `autodiff = AutoFiniteDiff()`:
their Jacobian and time derivative come from torch through the `ODEFunction` (never from Julia AD,
which cannot differentiate Python code), and anything else that would differentiate `f` falls back
to finite differences instead of pushing dual numbers into Python.

`linsolve = "gmres"` selects Krylov.jl's restarted GMRES, `KrylovJL_GMRES(gmres_restart = restart,
rtol = gmres_rtol, atol = 0, itmax = gmres_itmax)`: pysciml's stopping rule (the residual relative to
the right-hand side only) and iteration budget, which override the tolerance OrdinaryDiffEq would set
from the step's `reltol`. Its Jacobian-vector products are the `jvp` hook of the `ODEFunction` (torch,
see callbacks.jl), not finite differences. Otherwise the default LU.

ESDIRK methods get `NLNewton(κ = newton_kappa, max_iter = max_newton_iters)` and `smooth_est`, the
same stopping rule and error estimate as pysciml's native Newton iteration. `smooth_est` defaults to
pysciml's `false`; OrdinaryDiffEq's own default for KenCarp3/4/5 and Kvaerno3/5 is `true`.

FIRK methods get `κ = newton_kappa` (OrdinaryDiffEqFIRK's default is 1/100 too), `maxiters =
max_newton_iters` and `fast_convergence_cutoff = jac_reuse / (1 - jac_reuse)`: OrdinaryDiffEqFIRK keeps
the Jacobian when `θ / (1 - θ)` is below its cutoff, pysciml when the contraction `θ` is below `jac_reuse`
(this keyword's default 1/6 gives OrdinaryDiffEqFIRK's default cutoff 1/5); `jac_reuse = 0` renews it every step
in both.
`GaussLegendre` has `num_stages` (2: order 4, 3: order 6). FBDF and QNDF get `max_order = Val(max_order)`
and `NLNewton(max_iter = max_newton_iters)`; QNDF keeps OrdinaryDiffEq's `kappa`, the same as pysciml's.
"""
function make_algorithm(
        name::AbstractString; linsolve::AbstractString = "lu", restart::Integer = 30,
        gmres_rtol::Real = 1.0e-10, gmres_itmax::Integer = 300,
        newton_kappa::Real = 0.01, max_newton_iters::Integer = 10, smooth_est::Bool = false,
        jac_reuse::Real = 1 / 6, num_stages::Integer = 2, max_order::Integer = 5
    )
    haskey(EXPLICIT_ALGORITHMS, name) && return EXPLICIT_ALGORITHMS[name]()
    ctor = get(IMPLICIT_ALGORITHMS, name, nothing)
    ctor === nothing && throw(ArgumentError(
        "PySciML: unknown algorithm $(repr(name)); available: $(join(algorithm_names(), ", "))"
    ))
    linsolve in ("lu", "gmres") ||
        throw(ArgumentError("PySciML: linsolve must be \"lu\" or \"gmres\", got $(repr(linsolve))"))
    linear_solver = linsolve == "gmres" ? KrylovJL_GMRES(;
            gmres_restart = Int(restart), rtol = Float64(gmres_rtol), atol = 0.0, itmax = Int(gmres_itmax)
        ) : nothing
    if name in NEWTON_ALGORITHMS
        newton = NLNewton(; κ = Float64(newton_kappa), max_iter = Int(max_newton_iters))
        name in NO_SMOOTH_EST &&
            return ctor(; autodiff = AutoFiniteDiff(), linsolve = linear_solver, nlsolve = newton)
        return ctor(; autodiff = AutoFiniteDiff(), linsolve = linear_solver, nlsolve = newton, smooth_est)
    elseif name in FIRK_ALGORITHMS
        0 <= jac_reuse < 1 || throw(ArgumentError("PySciML: jac_reuse must lie in [0, 1), got $(jac_reuse)"))
        firk = (;
            autodiff = AutoFiniteDiff(), linsolve = linear_solver, κ = Float64(newton_kappa),
            maxiters = Int(max_newton_iters), fast_convergence_cutoff = Float64(jac_reuse / (1 - jac_reuse)),
        )
        name == "GaussLegendre" && return ctor(; num_stages = Int(num_stages), firk...)
        return ctor(; firk...)
    elseif name in BDF_ALGORITHMS
        1 <= max_order <= 5 || throw(ArgumentError("PySciML: max_order must lie in 1..5, got $(max_order)"))
        return ctor(;
            max_order = Val(Int(max_order)), autodiff = AutoFiniteDiff(), linsolve = linear_solver,
            nlsolve = NLNewton(; max_iter = Int(max_newton_iters)),
        )
    end
    return ctor(; autodiff = AutoFiniteDiff(), linsolve = linear_solver)
end

"Names of the SciMLSensitivity adjoints the Julia engine provides."
sensealg_names() = ["BacksolveAdjoint", "GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"]

"""
    make_sensealg(name; checkpointing = false, abstol = 1e-8, reltol = 1e-6)

The SciMLSensitivity adjoint called `name`. `autojacvec = false` and `autodiff = false` keep
SciMLSensitivity from setting up AD of the Python function (ReverseDiff/Enzyme/Zygote tapes or
ForwardDiff configurations); the vector-Jacobian products it needs come from the `ODEFunction`'s
`vjp`/`vjp_p` hooks, which SciMLSensitivity prefers whenever they are present. Without those hooks
it would differentiate the Python callback and silently get zeros. `abstol`/`reltol` are the
tolerances of `QuadratureAdjoint` (SciMLSensitivity uses the same pair for its backward solve of λ
and for the `quadgk` parameter integral; [`adjoint_gradients`](@ref) passes them explicitly too);
`checkpointing` applies to the other three.
"""
function make_sensealg(
        name::AbstractString; checkpointing::Bool = false,
        abstol::Real = 1.0e-8, reltol::Real = 1.0e-6
    )
    if name == "InterpolatingAdjoint"
        return InterpolatingAdjoint(; autodiff = false, autojacvec = false, checkpointing)
    elseif name == "QuadratureAdjoint"
        return QuadratureAdjoint(;
            autodiff = false, autojacvec = false, abstol = Float64(abstol), reltol = Float64(reltol)
        )
    elseif name == "GaussAdjoint"
        return GaussAdjoint(; autodiff = false, autojacvec = false, checkpointing)
    elseif name == "BacksolveAdjoint"
        return BacksolveAdjoint(; autodiff = false, autojacvec = false, checkpointing)
    end
    throw(ArgumentError(
        "PySciML: unknown sensitivity algorithm $(repr(name)); available: $(join(sensealg_names(), ", "))"
    ))
end
