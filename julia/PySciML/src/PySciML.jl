"""
    PySciML

The Julia half of pysciml's Julia engine. Python (`pysciml.julia`) calls the entry points below through
juliacall; everything crosses the language boundary as DLPack views (no copies):

- torch tensors arrive as `Py` objects exposing `__dlpack__` and become Julia arrays with [`jlview`](@ref);
- Julia arrays go back as torch tensors with [`torchview`](@ref), also inside the right-hand-side
  callbacks, so `u` seen by the Python `f` is a view of the solver's own memory.

Entry points called from Python (by name; `tests/test_julia_static.py` checks they exist):
[`solve_ode`](@ref), [`interpolate`](@ref), [`adjoint_gradients`](@ref), [`enable_cuda`](@ref),
[`cuda_installed`](@ref), [`zero_copy_roundtrip`](@ref), [`algorithm_names`](@ref),
[`sensealg_names`](@ref).

Julia's AD cannot see through a Python function, so every derivative comes from torch: the Jacobian
`jac`, the time derivative `tgrad`, the Jacobian-vector product `jvp` (matrix-free GMRES), and for
adjoints the vector-Jacobian products `vjp` (state) and `vjp_p` (parameters) of the `ODEFunction`.
Solvers get `autodiff = AutoFiniteDiff()` so that nothing ever pushes dual numbers into Python.
"""
module PySciML

using ADTypes: AutoFiniteDiff
using DLPack: DLPack
using LinearAlgebra: I
using LinearSolve: KrylovJL_GMRES
using OrdinaryDiffEqAdamsBashforthMoulton: AB3, AB4, AB5, ABM32, ABM43, ABM54
using OrdinaryDiffEqBDF: FBDF, QNDF
using OrdinaryDiffEqFIRK: GaussLegendre, RadauIIA3, RadauIIA5
using OrdinaryDiffEqLowOrderRK: BS3, DP5, Euler, Heun, Midpoint, Ralston, RK4
using OrdinaryDiffEqNonlinearSolve: NLNewton
using OrdinaryDiffEqRosenbrock: ROS3P, Rodas4, Rodas5, Rodas5P, Rosenbrock23
using OrdinaryDiffEqSDIRK: ImplicitEuler, KenCarp3, KenCarp4, KenCarp5, Kvaerno3, Kvaerno5, SDIRK2, TRBDF2,
    Trapezoid
using OrdinaryDiffEqTsit5: Tsit5
using OrdinaryDiffEqVerner: Vern7
using PrecompileTools: @compile_workload, @setup_workload
using PythonCall: PythonCall, Py, pyimport
using SciMLBase: SciMLBase, NoInit, NullParameters, ODEFunction, ODEProblem, SplitFunction,
    SplitODEProblem, solve
using SciMLSensitivity: BacksolveAdjoint, GaussAdjoint, InterpolatingAdjoint, QuadratureAdjoint,
    adjoint_sensitivities

export solve_ode, interpolate, adjoint_gradients, enable_cuda, cuda_installed, zero_copy_roundtrip,
    algorithm_names, sensealg_names

include("views.jl")
include("callbacks.jl")
include("algorithms.jl")
include("solve.jl")
include("sensitivities.jl")
include("cuda.jl")
include("precompile.jl")

end # module PySciML
