# Julia-side tests of PySciML. The parts that need no Python run everywhere; the end-to-end solve needs
# a Python with torch visible to PythonCall (e.g. JULIA_PYTHONCALL_EXE pointing at it) and is skipped
# otherwise. The full cross-language tests live in pysciml's tests/test_julia_e2e.py.

using PySciML
using PySciML: make_algorithm, make_sensealg, build_problem, null_callback_set, solve_kwargs, ViewCache,
    IMEX_ALGORITHMS, NEWTON_ALGORITHMS, DiscreteLoss
using PythonCall: pyimport, pyconvert, PyException
using SciMLBase: NoInit, NullParameters, ODEProblem, SplitFunction, SplitODEProblem
using LinearSolve: KrylovJL
using LinearAlgebra: I
using Test

@testset "PySciML" begin
    @testset "algorithms" begin
        names = algorithm_names()
        @test length(names) == 34  # 9 Runge-Kutta + 6 Adams explicit; 14 Rosenbrock/ESDIRK + 3 FIRK + 2 BDF
        for name in names
            @test make_algorithm(name) !== nothing
        end
        gmres = make_algorithm("Rodas5P"; linsolve = "gmres", restart = 10, gmres_rtol = 1.0e-8, gmres_itmax = 40)
        @test gmres.linsolve isa KrylovJL && gmres.linsolve.gmres_restart == 10
        @test gmres.linsolve.kwargs[:rtol] == 1.0e-8 && gmres.linsolve.kwargs[:itmax] == 40
        @test gmres.linsolve.kwargs[:atol] == 0.0
        @test make_algorithm("Rodas5P").linsolve === nothing
        for name in NEWTON_ALGORITHMS  # pysciml's default, not OrdinaryDiffEq's (true)
            @test make_algorithm(name).smooth_est == false
            @test make_algorithm(name; smooth_est = true).smooth_est == true
            @test make_algorithm(name; newton_kappa = 0.05, max_newton_iters = 7).nlsolve.max_iter == 7
        end
        radau = make_algorithm("RadauIIA5"; newton_kappa = 0.05, max_newton_iters = 7, jac_reuse = 0.001)
        @test radau.κ == 0.05 && radau.maxiters == 7 && radau.fast_convergence_cutoff ≈ 0.001 / 0.999
        @test make_algorithm("GaussLegendre"; num_stages = 3).num_stages == 3
        @test make_algorithm("RadauIIA3"; jac_reuse = 0.0).fast_convergence_cutoff == 0
        for name in ("FBDF", "QNDF")
            bdf = make_algorithm(name; max_order = 3, max_newton_iters = 6)
            @test bdf.max_order == Val(3) && bdf.nlsolve.max_iter == 6
            @test make_algorithm(name; linsolve = "gmres").linsolve isa KrylovJL
        end
        @test_throws ArgumentError make_algorithm("FBDF"; max_order = 6)
        @test_throws ArgumentError make_algorithm("NotAMethod")
        @test_throws ArgumentError make_algorithm("Rodas5P"; linsolve = "qr")
        @test all(in(names), IMEX_ALGORITHMS)
    end

    @testset "sensitivity algorithms" begin
        for name in sensealg_names()
            @test make_sensealg(name; checkpointing = true) !== nothing
        end
        @test_throws ArgumentError make_sensealg("DiscreteAdjoint")
    end

    @testset "problems and keywords" begin
        cbs = null_callback_set()
        u0 = zeros(3)
        plain = build_problem(cbs, nothing, u0, (0.0, 1.0), NullParameters(), I, ViewCache())
        @test plain isa ODEProblem && !(plain.problem_type isa SplitODEProblem)
        @test plain.f.jvp !== nothing && plain.f.vjp !== nothing && plain.f.vjp_p !== nothing
        # SplitODEProblem is a tag in `problem_type`: its constructor returns an ODEProblem
        split = build_problem(cbs, cbs, u0, (0.0, 1.0), NullParameters(), I, ViewCache())
        @test split isa ODEProblem && split.problem_type isa SplitODEProblem && split.f isa SplitFunction
        @test split.f.jvp !== nothing && split.f.f1.jvp !== nothing
        kw = solve_kwargs(;
            reltol = 1.0e-6, abstol = 1.0e-8, saveat = [0.0, 0.5], dt = nothing, adaptive = true,
            maxiters = 10, dense = false, dtmax = 0.1
        )
        @test kw.saveat == [0.0, 0.5] && !kw.save_everystep && kw.dtmax == 0.1 && !haskey(kw, :dt)
        @test kw.initializealg isa NoInit
        dense = solve_kwargs(;
            reltol = 1.0e-6, abstol = 1.0e-8, saveat = [0.5], dt = 0.01, adaptive = false,
            maxiters = 10, dense = true
        )
        @test isempty(dense.saveat) && dense.save_everystep && dense.dt == 0.01
        G = [1.0 2.0; 3.0 4.0]
        out = zeros(2)
        DiscreteLoss(G)(out, nothing, nothing, 0.0, 2)
        @test out == [2.0, 4.0]
    end

    torch = try
        pyimport("torch")
    catch err
        err isa PyException || rethrow()
        nothing
    end
    if torch === nothing
        @info "torch is not importable from PythonCall: skipping the end-to-end tests"
    else
        @testset "zero copy" begin
            x = torch.arange(4, dtype = torch.float64)
            jl_ptr, y, y_ptr = zero_copy_roundtrip(x)
            @test jl_ptr == pyconvert(UInt, x.data_ptr())
            @test y_ptr == pyconvert(UInt, y.data_ptr())
            @test pyconvert(Vector{Float64}, y.tolist()) == [1.0, 2.0, 3.0, 4.0]
        end
    end
end
