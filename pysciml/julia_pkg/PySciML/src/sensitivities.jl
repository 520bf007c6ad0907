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
                      quad_abstol = 1e-8, quad_reltol = 1e-6, reltol = 1e-6, abstol = 1e-8,
                      algorithm_options...) -> (du0, dp)

Gradients of `L = Σᵢ ⟨grads[i], u(saveat[i])⟩` for a solution of [`solve_ode`](@ref) that was solved
with `params` (the flattened parameters) and, unless `checkpointing`, with dense output.
`saveat` is a torch tensor `(S,)`, `grads` a torch tensor `(S, n)` (zero copy). The adjoint ODE is
solved backwards by `algorithm` (the forward method, so a stiff problem gets a stiff adjoint solve)
with `reltol`/`abstol` and the same `algorithm_options`; `sensealg` names the SciMLSensitivity
method. The state and parameter vector-Jacobian products come from the Python callbacks'
`vjp`/`vjp_p` hooks.

With an implicit `algorithm`, the Jacobian of the adjoint ODE (which SciMLSensitivity does not
supply) is built by finite differences over those hooks: `n + np` vector-Jacobian products for
InterpolatingAdjoint/BacksolveAdjoint, `n` for QuadratureAdjoint/GaussAdjoint; prefer the latter two
when there are many parameters.

Returns torch tensors `du0 (n,)` and `dp (np,)` (or `nothing` when the problem has no parameters).
"""
function adjoint_gradients(
        sol, saveat, grads, sensealg::AbstractString, algorithm::AbstractString;
        checkpointing::Bool = false, quad_abstol::Real = 1.0e-8, quad_reltol::Real = 1.0e-6,
        reltol::Real = 1.0e-6, abstol = 1.0e-8, algorithm_options...
    )
    ts = Vector{Float64}(jlview(saveat))
    G = jlview(grads)
    size(G) == (length(sol.prob.u0), length(ts)) || throw(DimensionMismatch(
        "PySciML: grads must have shape (S, n) = ($(length(ts)), $(length(sol.prob.u0))), got $(reverse(size(G)))"
    ))
    alg = make_algorithm(algorithm; algorithm_options...)
    s = make_sensealg(sensealg; checkpointing, abstol = quad_abstol, reltol = quad_reltol)
    kw = (; reltol = Float64(reltol), abstol = as_tolerance(abstol, sol.prob.u0))
    du0, dp = run_adjoint(sol, alg, ts, DiscreteLoss(G), s, kw)
    grad_p = dp === nothing ? nothing : torchview(owned_vector(dp'))
    return (torchview(owned_vector(du0)), grad_p)
end
