"""DiscreteAdjoint: backpropagation through the solver's own steps (the exact gradient of the discrete solution).

Without checkpoints the whole step graph is kept until backward (memory grows with the number of steps).
With ``checkpoints=K`` the save times are split into ``K`` segments; each segment is solved under
``torch.utils.checkpoint`` so only its start state is kept and its steps are recomputed during backward.
Step-size control is never differentiated (step sizes are constants of the discrete solution).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from ..algorithms import Algorithm
from ..native import solve_native as solve
from ..problem import ODEProblem
from ..sensealg import DiscreteAdjoint

Tensor = torch.Tensor


def discrete_solve(prob: ODEProblem, alg: Algorithm, save_t: Tensor, sensealg: DiscreteAdjoint,
                   solve_kw: dict[str, Any]) -> Tensor:
    """States at ``save_t`` ``(S, *u0.shape)``, differentiable by autograd through every step."""
    k = sensealg.checkpoints
    if not k or k <= 1 or len(save_t) <= 2:
        return _checked(solve(prob, alg, saveat=save_t, **solve_kw))
    bounds = torch.linspace(0, len(save_t) - 1, min(k, len(save_t) - 1) + 1).round().long().unique().tolist()
    pieces = [prob.u0[None]]
    y = prob.u0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        seg_t = save_t[lo: hi + 1]

        def segment(y_start: Tensor, seg_t: Tensor = seg_t) -> Tensor:
            piece = prob.remake(u0=y_start, tspan=(float(seg_t[0]), float(seg_t[-1])))
            return _checked(solve(piece, alg, saveat=seg_t, **solve_kw))

        ys = checkpoint(segment, y, use_reentrant=False)
        pieces.append(ys[1:])
        y = ys[-1]
    return torch.cat(pieces)


def _checked(sol: Any) -> Tensor:
    if not sol.success:
        from ..errors import SolverError

        raise SolverError("solve failed while computing gradients: " + sol.message, sol.retcode)
    return sol.u
