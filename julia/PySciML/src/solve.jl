# Forward solves: build the problem around the Python callbacks, solve, hand the result back as torch
# views plus the Julia solution (kept by Python as a handle for dense output and adjoints).

"""
    build_problem(implicit, explicit, u0, tspan, p, mass, views)

`ODEProblem` (when `explicit === nothing`) or `SplitODEProblem` over the Python callbacks.
`p` is `NullParameters()` for plain solves and the flattened parameter vector for adjoint solves.
"""
function build_problem(cbs::CallbackSet, ::Nothing, u0::AbstractVector, tspan, p, mass, views::ViewCache)
    return ODEProblem(ode_function(cbs, views, mass), u0, tspan, p)
end

function build_problem(
        cbs::CallbackSet, explicit::CallbackSet, u0::AbstractVector, tspan, p, mass, views::ViewCache
    )
    return SplitODEProblem(split_function(cbs, explicit, views), u0, tspan, p)
end

"""
    solve_kwargs(; reltol, abstol, saveat, dt, adaptive, maxiters, dense, dtmin, dtmax, tstops)

Keyword arguments of `solve`, matching pysciml's native semantics:
- `dense = true`: every step is saved with the method's continuous extension; values at `saveat` are
  interpolated afterwards (as the native engine does), never forced step ends;
- `dense = false` with `saveat`: only the save points are stored;
- `dense = false` without `saveat`: every step, no interpolant.
`dt`, `dtmin > 0`, `dtmax` and `tstops` (times the steps land on) are passed only when given, so Julia's
own defaults apply otherwise.

`initializealg = NoInit()`: the solve starts from `u0` as given, as the native engine does.
OrdinaryDiffEq's default changed between majors (v1 adjusted the algebraic components of an
inconsistent `u0` under a singular mass matrix, v2 raises `CheckInitFailureError`); pysciml checks
consistency itself before calling Julia (`pysciml.julia._arguments.check_consistent_u0`, the same
rule as SciMLBase's `CheckInit`) and refuses an inconsistent `u0` with a clear error.
"""
function solve_kwargs(;
        reltol::Real, abstol, saveat::Union{Nothing, Vector{Float64}}, dt, adaptive::Bool,
        maxiters::Integer, dense::Bool, dtmin::Real = 0.0, dtmax = nothing,
        tstops::Union{Nothing, Vector{Float64}} = nothing
    )
    everystep = saveat === nothing || dense
    kw = (;
        reltol = Float64(reltol), abstol, adaptive, maxiters = Int(maxiters), dense,
        save_everystep = everystep, saveat = everystep ? Float64[] : saveat,
        initializealg = NoInit(),
    )
    dt === nothing || (kw = merge(kw, (; dt = Float64(dt))))
    dtmin > 0 && (kw = merge(kw, (; dtmin = Float64(dtmin))))
    dtmax === nothing || (kw = merge(kw, (; dtmax = Float64(dtmax))))
    tstops === nothing || (kw = merge(kw, (; tstops)))
    return kw
end

"Function barrier: one compiled method per (problem, algorithm, keywords) type."
run_solve(prob, alg, kw::NamedTuple) = solve(prob, alg; kw...)

as_tolerance(x::Real, u0) = Float64(x)
as_tolerance(x, u0) = copy(jlview(x))  # per-component atol: a tensor shaped like the flat state

"""
    solve_ode(callbacks, u0, t0, t1, algorithm; explicit = nothing, mass = nothing, params = nothing,
              reltol = 1e-3, abstol = 1e-6, saveat = nothing, dt = nothing, adaptive = true,
              maxiters = 100_000, dense = true, dtmin = 0.0, dtmax = nothing, tstops = nothing,
              algorithm_options...) -> (t, u, retcode, stats, sol)

Solve `du/dt = f(t, u, p)` from `u0` (a flat torch tensor of `n` values, viewed without a copy) on
`[t0, t1]` with the method called `algorithm`. `callbacks` is the Python `TorchCallbacks` object
(for a split problem: of the implicit part, `explicit` the one of the explicit part). `mass` is the
transposed mass matrix as a contiguous torch tensor (so Julia's column-major view reads `M`), `params`
the flat parameter vector for adjoint solves, `abstol` a number or a flat tensor, `saveat` and
`tstops` torch tensors of save times and of times the steps must land on; `algorithm_options` go
to [`make_algorithm`](@ref) (`linsolve`, `restart`, `newton_kappa`, `max_newton_iters`, ...).

Returns `t` (a CPU torch tensor `(S,)` in the state's dtype), `u` (a torch tensor `(S, n)` on the
state's device: the `n × S` Julia matrix of saved states), the `ReturnCode` name, the counters
`(nf, nf2, nw, nsolve, njacs, nnonliniter, nnonlinconvfail, naccept, nreject)` and the Julia solution
(for [`interpolate`](@ref) and [`adjoint_gradients`](@ref)).
"""
function solve_ode(
        callbacks, u0, t0::Real, t1::Real, algorithm::AbstractString;
        explicit = nothing, mass = nothing, params = nothing,
        reltol::Real = 1.0e-3, abstol = 1.0e-6, saveat = nothing, dt = nothing,
        adaptive::Bool = true, maxiters::Integer = 100_000, dense::Bool = true,
        dtmin::Real = 0.0, dtmax = nothing, tstops = nothing, algorithm_options...
    )
    u = jlview(u0)
    views = ViewCache()
    cbs = callback_set(Py(callbacks))
    ecbs = explicit === nothing ? nothing : callback_set(Py(explicit))
    M = mass === nothing ? I : copy(jlview(mass))
    p = params === nothing ? NullParameters() : copy(jlview(params))
    prob = build_problem(cbs, ecbs, u, (Float64(t0), Float64(t1)), p, M, views)
    alg = make_algorithm(algorithm; algorithm_options...)
    ts = saveat === nothing ? nothing : Vector{Float64}(jlview(saveat))
    stops = tstops === nothing ? nothing : Vector{Float64}(jlview(tstops))
    kw = solve_kwargs(;
        reltol, abstol = as_tolerance(abstol, u), saveat = ts, dt, adaptive, maxiters, dense,
        dtmin, dtmax, tstops = stops
    )
    sol = run_solve(prob, alg, kw)
    return package_solution(sol, ts, dense)
end

"Saved states as an `n × S` matrix (one column per save point), on the state's device."
function state_matrix(sol)
    u0 = sol.prob.u0
    isempty(sol.u) && return similar(u0, length(u0), 0)
    return reduce(hcat, sol.u)
end

"The save times the solve reached (all of them unless it stopped early)."
function reached(sol, ts::Vector{Float64})
    isempty(sol.t) && return Float64[]
    dir = sign(sol.prob.tspan[2] - sol.prob.tspan[1])
    tend = sol.t[end]
    return filter(t -> dir * (t - tend) <= 0, ts)
end

"Dense output at times `ts` as an `n × M` matrix."
function interpolate_matrix(sol, ts::AbstractVector{<:Real})
    u0 = sol.prob.u0
    U = similar(u0, length(u0), length(ts))
    tmp = similar(u0)
    for (j, t) in enumerate(ts)
        sol(tmp, t)
        view(U, :, j) .= tmp
    end
    return U
end

function stats_tuple(sol)
    s = sol.stats
    s === nothing && return ntuple(_ -> -1, 9)
    return (
        s.nf, s.nf2, s.nw, s.nsolve, s.njacs, s.nnonliniter, s.nnonlinconvfail, s.naccept,
        s.nreject,
    )
end

retcode_name(sol) = String(Symbol(sol.retcode))

function package_solution(sol, ts::Union{Nothing, Vector{Float64}}, dense::Bool)
    if ts !== nothing && dense
        times = reached(sol, ts)
        U = interpolate_matrix(sol, times)
    else
        times = sol.t
        U = state_matrix(sol)
    end
    T = eltype(U)
    return (torchview(Vector{T}(times)), torchview(U), retcode_name(sol), stats_tuple(sol), sol)
end

"""
    interpolate(sol, t) -> torch tensor (M, n)

Dense output of a solution returned by [`solve_ode`](@ref) at the times of the torch tensor `t`
(shape `(M,)`), as a torch tensor over a fresh Julia `n × M` matrix.
"""
function interpolate(sol, t)
    ts = Vector{Float64}(jlview(t))
    return torchview(interpolate_matrix(sol, ts))
end
