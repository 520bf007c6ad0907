"""The spiral neural-ODE training of :mod:`benchmarks.neural_ode` in diffrax (JAX, CPU): the same network
(an equinox 2-50-2 tanh MLP started from the torch model's weights), the same batches, Dopri5 at the same
tolerances on the ``(20, 1, 2)`` batch as one state (one step size, like torchdiffeq), gradients by diffrax's
default ``RecursiveCheckpointAdjoint`` (discrete, through the steps), Adam from optax; the whole training step
is one ``eqx.filter_jit`` (its compile time is reported separately). f evaluations are derived from diffrax's
step counts: ``6 steps + 2`` forward; the backward pass is reverse-mode through those.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch


def train_spiral_diffrax(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                         warmup: int = 3) -> dict[str, float]:
    """Adam (lr 1e-3) on ``batches`` (each ``(y0 (20, 1, 2), t (10,), y (10, 20, 1, 2))``) starting from the
    weights of ``model`` (a :class:`benchmarks.neural_ode.SpiralField`). Returns time per iteration (median
    after ``warmup``), compile seconds, forward NFE (derived) and the final loss."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    lin1, lin2 = model.net[0], model.net[2]
    mlp = eqx.nn.MLP(2, 2, 50, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0))

    def to_jax(x: torch.Tensor) -> Any:
        return jnp.asarray(x.detach().cpu().numpy().astype(np.float32))

    mlp = eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[0].bias, m.layers[1].weight, m.layers[1].bias), mlp,
                      (to_jax(lin1.weight), to_jax(lin1.bias), to_jax(lin2.weight), to_jax(lin2.bias)))

    def field(t: Any, y: Any, net: Any) -> Any:
        flat = y.reshape(-1, 2) ** 3
        return jax.vmap(net)(flat).reshape(y.shape)

    term = diffrax.ODETerm(field)
    ctrl = diffrax.PIDController(rtol=1e-7, atol=1e-9)

    def predict(net: Any, y0: Any, ts: Any) -> tuple[Any, Any]:
        sol = diffrax.diffeqsolve(term, diffrax.Dopri5(), ts[0], ts[-1], None, y0, args=net,
                                  stepsize_controller=ctrl, saveat=diffrax.SaveAt(ts=ts), max_steps=100_000)
        return sol.ys, sol.stats["num_steps"]

    opt = optax.adam(1e-3)
    opt_state = opt.init(eqx.filter(mlp, eqx.is_array))

    @eqx.filter_jit
    def step(net: Any, state: Any, y0: Any, ts: Any, ys: Any) -> tuple[Any, Any, Any, Any]:
        def loss_fn(n: Any) -> tuple[Any, Any]:
            pred, nsteps = predict(n, y0, ts)
            return jnp.mean(jnp.abs(pred - ys)), nsteps

        (loss, nsteps), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(net)
        updates, state = opt.update(grads, state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), state, loss, nsteps

    times, nfe, loss, compile_s = [], [], float("nan"), 0.0
    for it, (by0, bt, by) in enumerate(batches):
        args = (to_jax(by0), to_jax(bt), to_jax(by))
        t0 = time.perf_counter()
        mlp, opt_state, lossv, nsteps = step(mlp, opt_state, *args)
        lossv = jax.block_until_ready(lossv)
        elapsed = time.perf_counter() - t0
        if it == 0:
            compile_s = elapsed
        if it >= warmup:
            times.append(elapsed)
        nfe.append(6 * int(nsteps) + 2)
        loss = float(lossv)
    return {"time": statistics.median(times), "nfe_f": statistics.mean(nfe), "nfe_b": float("nan"), "loss": loss,
            "compile": compile_s}
