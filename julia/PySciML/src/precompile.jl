# Precompile workload: the calls Python makes, with the argument types Python produces.
#
# No Python runs during precompilation, so nothing here calls a callback. The problems are built by the
# same functions `solve_ode` uses, around null `Py` callbacks (`pynew()` needs no interpreter), which
# gives exactly the `ODEProblem`/`SplitODEProblem` types of a real solve on a Float64 state; `precompile`
# then compiles the solve, the packaging of its result, the dense output and the adjoints for those
# types without executing them. Float32 states and CUDA arrays compile on first use.
#
# Disable with Preferences: `PySciML.precompile_workload = false` (PrecompileTools' switch).

"Compile `run_solve` for one problem/algorithm/keyword type, and what Python does with its result."
function precompile_solve(prob, alg, kw::NamedTuple)
    precompile(run_solve, (typeof(prob), typeof(alg), typeof(kw)))
    S = Base.promote_op(run_solve, typeof(prob), typeof(alg), typeof(kw))
    if isconcretetype(S)
        precompile(package_solution, (S, Nothing, Bool))
        precompile(package_solution, (S, Vector{Float64}, Bool))
        precompile(interpolate_matrix, (S, Vector{Float64}))
    end
    return S
end

"Compile the adjoint of a solution type `S` for one algorithm and sensitivity algorithm."
function precompile_adjoint(S, alg, sensealg, kw::NamedTuple)
    isconcretetype(S) || return nothing
    precompile(
        run_adjoint,
        (S, typeof(alg), Vector{Float64}, DiscreteLoss{Matrix{Float64}}, typeof(sensealg), typeof(kw))
    )
    return nothing
end

@setup_workload begin
    views = ViewCache()
    cbs = null_callback_set()
    u0 = zeros(Float64, 3)
    tspan = (0.0, 1.0)
    @compile_workload begin
        # Keywords of a default `solve(prob, alg, backend="julia")` (dense, every step) and of a solve
        # with save points and a per-component atol.
        dense_kw = solve_kwargs(;
            reltol = 1.0e-3, abstol = 1.0e-6, saveat = nothing, dt = nothing, adaptive = true,
            maxiters = 100_000, dense = true
        )
        saveat_kw = solve_kwargs(;
            reltol = 1.0e-3, abstol = zeros(3), saveat = [0.0, 1.0], dt = nothing, adaptive = true,
            maxiters = 100_000, dense = false
        )
        plain = build_problem(cbs, nothing, u0, tspan, NullParameters(), I, views)
        split = build_problem(cbs, cbs, u0, tspan, NullParameters(), I, views)
        with_params = build_problem(cbs, nothing, u0, tspan, zeros(3), I, views)
        adjoint_kw = (; reltol = 1.0e-6, abstol = 1.0e-8)
        for name in algorithm_names()
            alg = make_algorithm(name)
            precompile_solve(plain, alg, dense_kw)
            precompile_solve(plain, alg, saveat_kw)
            name in IMEX_ALGORITHMS && precompile_solve(split, alg, dense_kw)
            if name in ("Tsit5", "Rodas5P", "KenCarp4")
                S = precompile_solve(with_params, alg, dense_kw)
                for sname in sensealg_names()
                    precompile_adjoint(S, alg, make_sensealg(sname), adjoint_kw)
                end
            end
        end
        algorithm_names()
        sensealg_names()
    end
end
