# Python callbacks as SciML functions. The Python side (pysciml/julia/_callbacks.py, class
# TorchCallbacks) exposes one bound method per function; each receives torch views of the Julia arrays
# (zero copy) and the time as a Python float, and writes its result into the first view in place:
#
#   rhs(du, u, t)          du .= f(t, u, p)
#   jac(Jt, u, t)          Jt .= (df/du)ᵀ   (the view of a column-major J reads as Jᵀ in torch)
#   tgrad(dT, u, t)        dT .= ∂f/∂t
#   jvp(out, v, u, t)      out .= (df/du) v    (GMRES: OrdinaryDiffEq's JVPCache uses `f.jvp` if set)
#   vjp(out, λ, u, t)      out .= (df/du)ᵀ λ
#   vjp_p(out, λ, u, t)    out .= (df/dp)ᵀ λ   (p flattened in the order pysciml.julia chose)
#
# The parameter vector Julia passes as `p` is only a copy for SciMLSensitivity's bookkeeping (sizes of
# the parameter gradient); the Python side evaluates f with its own torch parameters.

"""
    PyCallback(fn::Py, views::ViewCache)

A Python function called in place with torch views of its array arguments. Called as
`cb(out, u, p, t)` (right-hand side, Jacobian, time derivative) or `cb(out, v, u, p, t)`
(Jacobian-vector and vector-Jacobian products); `p` is not passed on (see the file header).
"""
struct PyCallback
    fn::Py
    views::ViewCache
end

# Arrays that DLPack cannot share exactly (see `shareable`: views of GPU arrays, structured matrices)
# are copied on the way in; outputs are computed into a dense temporary and copied back.
shared_input(A::AbstractArray) = shareable(A) ? A : copy(A)
shared_output(A::AbstractArray) = shareable(A) ? A : similar(A, eltype(A), size(A))

function (cb::PyCallback)(out, u, p, t)
    o = shared_output(out)
    cb.fn(torchview(cb.views, o), torchview(cb.views, shared_input(u)), Float64(t))
    o === out || copyto!(out, o)
    return nothing
end

function (cb::PyCallback)(out, v, u, p, t)
    o = shared_output(out)
    cb.fn(
        torchview(cb.views, o), torchview(cb.views, shared_input(v)),
        torchview(cb.views, shared_input(u)), Float64(t)
    )
    o === out || copyto!(out, o)
    return nothing
end

"""
    CallbackSet

The six bound Python methods of one `TorchCallbacks` object, in the order of the file header.
"""
struct CallbackSet
    rhs::Py
    jac::Py
    tgrad::Py
    jvp::Py
    vjp::Py
    vjp_p::Py
end

"Look up the bound methods of a Python `TorchCallbacks` object (calls into Python)."
callback_set(cb::Py) = CallbackSet(cb.rhs, cb.jac, cb.tgrad, cb.jvp, cb.vjp, cb.vjp_p)

"A `CallbackSet` of null `Py` objects, for the precompile workload (nothing is called)."
null_callback_set() = CallbackSet(ntuple(_ -> PythonCall.pynew(), 6)...)

"""
    ode_function(cbs, views, mass) -> ODEFunction

In-place `ODEFunction` whose `f`, `jac`, `tgrad`, `jvp`, `vjp` and `vjp_p` are the Python callbacks.
`jvp` is only used by matrix-free (GMRES) Newton-Krylov solves, `vjp`/`vjp_p` only by adjoints.
`FullSpecialize`: no FunctionWrappers (SciMLSensitivity would otherwise rebuild the function without
its `vjp` hooks) and one compiled solver per algorithm, cached by the precompile workload.
"""
function ode_function(cbs::CallbackSet, views::ViewCache, mass)
    return ODEFunction{true, SciMLBase.FullSpecialize}(
        PyCallback(cbs.rhs, views);
        jac = PyCallback(cbs.jac, views),
        tgrad = PyCallback(cbs.tgrad, views),
        jvp = PyCallback(cbs.jvp, views),
        vjp = PyCallback(cbs.vjp, views),
        vjp_p = PyCallback(cbs.vjp_p, views),
        mass_matrix = mass
    )
end

"""
    split_function(implicit, explicit, views) -> SplitFunction

`du/dt = f₁ + f₂` for IMEX methods: `f₁` (stiff, with its Jacobian, time derivative and
Jacobian-vector product from the `implicit` callbacks) is treated implicitly, `f₂` (the `rhs` of the
`explicit` callbacks) explicitly. OrdinaryDiffEq builds its GMRES operator from the `SplitFunction`
itself, so the `jvp` (of `f₁` only) goes on the `SplitFunction` as well as on `f₁`.
"""
function split_function(implicit::CallbackSet, explicit::CallbackSet, views::ViewCache)
    jvp = PyCallback(implicit.jvp, views)
    f1 = ODEFunction{true, SciMLBase.FullSpecialize}(PyCallback(implicit.rhs, views); jvp)
    f2 = ODEFunction{true, SciMLBase.FullSpecialize}(PyCallback(explicit.rhs, views))
    return SplitFunction{true, SciMLBase.FullSpecialize}(
        f1, f2;
        jac = PyCallback(implicit.jac, views),
        tgrad = PyCallback(implicit.tgrad, views),
        jvp
    )
end
