# Adjoint gradients through SciMLSensitivity, with every vector-Jacobian product supplied by torch.
#
# The loss is L = Σᵢ ⟨gᵢ, u(tᵢ)⟩ where gᵢ = ∂L/∂u(tᵢ) are the incoming torch gradients (the rows of
# `grads`); SciMLSensitivity's discrete-data form takes exactly these as `dgdu_discrete`. It returns
# (∂L/∂u0, (∂L/∂p)ᵀ) with no sign change (SciMLSensitivity's tests compare both to ForwardDiff).

"""
    DiscreteLoss(G)

`dgdu_discrete(out, u, p, t, i)` for the linear loss above: `out .= G[:, i]`, where the `n × S`
matrix `G` is the Julia view of the torch gradient of the `S` saved states.
"""
struct DiscreteLoss{M <: AbstractMatrix}
    G::M
end

function (d::DiscreteLoss)(out, u, p, t, i)
    out .= view(d.G, :, i)
    return nothing
end

"Function barrier for the adjoint solve."
function run_adjoint(sol, alg, ts::Vector{Float64}, dg::DiscreteLoss, sensealg, kw::NamedTuple)
    return adjoint_sensitivities(sol, alg; t = ts, dgdu_discrete = dg, sensealg, kw...)
end

owned_vector(x) = copy(vec(x))

"""
    adjoint_gradients(sol, saveat, grads, sensealg, algorithm; checkpointing = false,
                      reltol = 1e-6, abstol = 1e-8, algorithm_options...) -> (du0, dp)

Gradients of `L = Σᵢ ⟨grads[i], u(saveat[i])⟩` for a solution of [`solve_ode`](@ref) that was solved
with `params` (the flattened parameters) and, unless `checkpointing`, with dense output.
`saveat` is a torch tensor `(S,)`, `grads` a torch tensor `(S, n)` (zero copy). The adjoint ODE is
solved backwards by `algorithm` (the forward method, so a stiff problem gets a stiff adjoint solve)
with the same `algorithm_options`; `sensealg` names the SciMLSensitivity method. The state and
parameter vector-Jacobian products come from the Python callbacks' `vjp`/`vjp_p` hooks.

`reltol` and `abstol` are handed to `adjoint_sensitivities` and are scalars: SciMLSensitivity uses
them for the backward solve, whose state is not the forward state (`n + np` unknowns for
InterpolatingAdjoint, `2n + np` for BacksolveAdjoint; `n` for QuadratureAdjoint and GaussAdjoint but
in units of ∂L/∂u), for the forward re-solves of checkpointing (state `n`) and, for
QuadratureAdjoint, as `quadgk`'s `atol`/`rtol`; a per-component vector of length `n` fits none of
these together. The Python side chooses the values (see `pysciml.julia._arguments.adjoint_settings`).

With an implicit `algorithm`, the Jacobian of the adjoint ODE (which SciMLSensitivity does not
supply) is built by finite differences over those hooks: `n + np` vector-Jacobian products for
InterpolatingAdjoint/BacksolveAdjoint, `n` for QuadratureAdjoint/GaussAdjoint; prefer the latter two
when there are many parameters.

GaussAdjoint needs parameters (SciMLSensitivity's `GaussIntegrand` takes `length(p)`, which
`NullParameters` does not define); without parameters the Python side asks for QuadratureAdjoint,
whose backward solve for λ is the same and which returns `dp = nothing` for `NullParameters`.

Returns torch tensors `du0 (n,)` and `dp (np,)` (or `nothing` when the problem has no parameters).
"""
function adjoint_gradients(
        sol, saveat, grads, sensealg::AbstractString, algorithm::AbstractString;
        checkpointing::Bool = false, reltol::Real = 1.0e-6, abstol::Real = 1.0e-8, algorithm_options...
    )
    ts = Vector{Float64}(jlview(saveat))
    G = jlview(grads)
    size(G) == (length(sol.prob.u0), length(ts)) || throw(DimensionMismatch(
        "PySciML: grads must have shape (S, n) = ($(length(ts)), $(length(sol.prob.u0))), got $(reverse(size(G)))"
    ))
    sensealg == "GaussAdjoint" && sol.prob.p isa NullParameters && throw(ArgumentError(
        "PySciML: GaussAdjoint needs parameters (SciMLSensitivity takes length(p)); without " *
            "parameters use QuadratureAdjoint, which solves the same adjoint ODE for λ"
    ))
    alg = make_algorithm(algorithm; algorithm_options...)
    s = make_sensealg(sensealg; checkpointing, abstol, reltol)
    kw = (; reltol = Float64(reltol), abstol = Float64(abstol))
    du0, dp = run_adjoint(sol, alg, ts, DiscreteLoss(G), s, kw)
    grad_p = dp === nothing ? nothing : torchview(owned_vector(dp'))
    return (torchview(owned_vector(du0)), grad_p)
end
