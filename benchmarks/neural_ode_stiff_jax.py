"""The stiff surrogate training of :mod:`benchmarks.neural_ode_stiff` in diffrax (JAX, CPU, float64): the same model
(ROBER mass action with log rate constants plus ``1e-3`` times a 3-16-3 tanh MLP of ``y * SCALE``), started from
the torch model's parameters, the same data and loss, Adam (optax, lr 0.05); ``Kvaerno5`` (an ESDIRK method,
diffrax's stiff solver of the same order as Rodas5P) with a PID controller at rtol 1e-6, atol 1e-10, saving at
the observation times; gradients by ``RecursiveCheckpointAdjoint`` (discrete, through the steps: diffrax's
default). The whole training step is one ``jax.jit``; the first call compiles it, its time is reported apart.
"""

from __future__ import annotations

import statistics
import time
from types import ModuleType
from typing import Any

import numpy as np
import torch


def train_stiff_diffrax(ex: ModuleType, model: torch.nn.Module, iters: int, t_end: float) -> dict[str, Any]:
    """``iters`` Adam iterations from ``model``'s parameters (an ``ex.RoberSurrogate``); time per iteration
    (median after the first, which compiles; wall and process CPU time), compile seconds (first call minus the
    median), steps per forward solve and the final loss."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)

    def arr(x: torch.Tensor) -> Any:
        return jnp.asarray(x.detach().cpu().numpy().astype(np.float64))

    lin1, lin2 = model.mlp[0], model.mlp[2]
    params = {"logk": arr(model.logk), "w1": arr(lin1.weight), "b1": arr(lin1.bias), "w2": arr(lin2.weight),
              "b2": arr(lin2.bias)}
    scale = arr(ex.SCALE)
    t, data = ex.make_data(t_end)
    ts, ys = arr(t), arr(data)

    def field(t: Any, y: Any, p: Any) -> Any:
        k1, k2, k3 = jnp.exp(p["logk"])
        r1, r2, r3 = k1 * y[0], k2 * y[1] ** 2, k3 * y[1] * y[2]
        hidden = jnp.tanh(p["w1"] @ (y * scale) + p["b1"])
        return jnp.stack((-r1 + r3, r1 - r2 - r3, r2)) + 1e-3 * (p["w2"] @ hidden + p["b2"])

    term = diffrax.ODETerm(field)
    ctrl = diffrax.PIDController(rtol=1e-6, atol=1e-10)
    opt = optax.adam(0.05)

    @jax.jit
    def step(p: Any, state: Any) -> tuple[Any, Any, Any, Any]:
        def loss_fn(q: Any) -> tuple[Any, Any]:
            sol = diffrax.diffeqsolve(term, diffrax.Kvaerno5(), ts[0], ts[-1], None, ys[0], args=q,
                                      saveat=diffrax.SaveAt(ts=ts), stepsize_controller=ctrl,
                                      adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=100_000)
            return jnp.mean(((sol.ys - ys) * scale) ** 2), sol.stats["num_steps"]

        (loss, steps), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss, steps

    state = opt.init(params)
    times, cpu, steps, loss = [], [], [], float("nan")
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        params, state, lossv, nsteps = step(params, state)
        lossv = jax.block_until_ready(lossv)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        steps.append(int(nsteps))
        loss = float(lossv)
    med, med_cpu = statistics.median(times[1:] or times), statistics.median(cpu[1:] or cpu)
    return {"time": med, "iters": len(times), "compile": times[0] - med, "steps": statistics.mean(steps),
            "cpu": med_cpu, "compile_cpu": cpu[0] - med_cpu, "loss": loss, "done": True}
