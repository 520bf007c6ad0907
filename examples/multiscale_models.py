"""The four forecasters of ``multiscale_forecast.py`` (issue 16, reproduction b), trained on one system's data.

Plain helpers for the example script, not part of pysciml: the autoencoder (from ``multiscale_reconstruction``),
latent HiTS, full-state HiTS, the latent neural ODE, and the direct stiff solver of the true equations. Every
learned model works on states scaled by one mean and one standard deviation (``Scaled``); errors are computed
by the caller in the data's own units.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from multiscale_reconstruction import train_ae

from pysciml import KenCarp4, Rodas5P, Tsit5, solve
from pysciml._progress import training_bar
from pysciml.models import HiTS, LatentHiTS, LatentNeuralODE
from pysciml.models.hnn import mlp
from pysciml.problems import fitzhugh_nagumo_lattice, kuramoto_sivashinsky
from pysciml.solution import raise_if_failed

Tensor = torch.Tensor


@dataclass
class Scaled:
    """``(x - mean) / std`` with one scalar each, float32 for the networks."""

    mean: float
    std: float

    def fwd(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std).float()

    def inv(self, y: Tensor) -> Tensor:
        return y.double() * self.std + self.mean


def best_time(fn: Callable[[], Tensor], repeats: int) -> tuple[Tensor, float]:
    """``fn()`` once to warm up, then the best wall time of ``repeats`` calls (no gradient) and the last output."""
    with torch.no_grad():
        out = fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
    return out, best


# ------------------------------------------------------------------------------------------------- the solver
def direct_problem(system: str, params: dict[str, Any], x0: Tensor, t_end: float) -> Any:
    """The true equations from ``x0`` ``(B, n)`` (float64) over ``(0, t_end)``, with the generator's parameters."""
    if system == "ks":
        prob = kuramoto_sivashinsky(params["N"], params["L"], scheme=params["scheme"], u0=x0)
    else:
        prob = fitzhugh_nagumo_lattice(params["n_nodes"], params["length"], params["D_u"], params["D_v"],
                                       params["a0"], params["a1"], params["eps"], u0=x0)
    return prob.remake(tspan=(0.0, float(t_end)))


def direct_alg(system: str) -> Any:
    """The data's own method: KenCarp4 (IMEX) for KS, Rodas5P for the FHN lattice."""
    return KenCarp4() if system == "ks" else Rodas5P()


def direct_forecast(system: str, params: dict[str, Any], x0: Tensor, t: Tensor, rtol: float,
                    step: float | None = None) -> Tensor:
    """States ``(B, T, n)`` at the times ``t`` ``(T,)`` by the stiff solver: adaptive at ``rtol`` (``atol =
    rtol / 100``), or fixed steps of ``step`` (values at ``t`` from the dense output)."""
    prob = direct_problem(system, params, x0, float(t[-1]))
    fixed = {} if step is None else {"dt": step, "adaptive": False}
    sol = raise_if_failed(solve(prob, direct_alg(system), rtol=rtol, atol=rtol / 100, saveat=t.tolist(), **fixed),
                          "direct forecast")
    return sol.u.transpose(0, 1)


def hybrid_fine_step(system: str, params: dict[str, Any], scale: Scaled, dt: float) -> Callable[[Tensor], Tensor]:
    """One step of size ``dt`` of the data's own method (KenCarp4 / Rodas5P, fixed step) on the true equations,
    as HiTS' finest level, on scaled float32 states ``(N, n)``: unscale, step, scale back. Where the fixed step
    fails (the library flags it Unstable, e.g. from a poor network state), the batch is solved adaptively over
    ``dt`` instead (rtol 1e-6); ``step.fallbacks`` counts those calls."""
    def step(y: Tensor) -> Tensor:
        prob = direct_problem(system, params, scale.inv(y), dt)
        sol = solve(prob, direct_alg(system), dt=dt, adaptive=False, rtol=1e-6, atol=1e-8, saveat=[dt])
        if not sol.success:
            step.fallbacks += 1  # type: ignore[attr-defined]
            sol = raise_if_failed(solve(prob, direct_alg(system), rtol=1e-6, atol=1e-8, saveat=[dt]), "hybrid step")
        return scale.fwd(sol.u[-1])
    step.fallbacks = 0  # type: ignore[attr-defined]
    return step


# ------------------------------------------------------------------------------------------------- learned models
def fit_autoencoder(train: Tensor, a: argparse.Namespace) -> Any:
    """``multiscale_reconstruction.train_ae`` on the scaled float32 training snapshots ``(n, n_state)``."""
    ns = SimpleNamespace(seed=a.seed, hidden=a.ae_hidden, lr=1e-3, epochs=a.ae_epochs, batch=64)
    return train_ae(train, a.latent, ns)


def fit_hits(dim: int, trajectories: Tensor, a: argparse.Namespace, encode_decode: tuple | None = None
             ) -> tuple[Any, dict[int, list[float]]]:
    """A float32 ``HiTS`` on ``dim`` coordinates (levels ``0..a.levels``), every level trained on the scaled
    training trajectories ``(n_traj, T, n)``; wrapped in ``LatentHiTS`` when ``encode_decode`` is given."""
    torch.manual_seed(a.seed + 17)
    hits = HiTS(dim, levels=range(a.levels + 1), hidden=tuple(a.hits_hidden), dtype=torch.float32)
    model = hits if encode_decode is None else LatentHiTS(encode_decode[0], encode_decode[1], hits)
    history = model.fit(trajectories, n_forward=a.n_forward, epochs=a.hits_epochs, lr=1e-3,
                        batch_size=a.batch, seed=a.seed, progress=a.progress)
    return model, history


def fit_latent_node(ae: Any, trajectories: Tensor, dt: float, a: argparse.Namespace) -> tuple[Any, list[float]]:
    """``LatentNeuralODE`` with the trained autoencoder frozen and an MLP latent field, Tsit5 (rtol 1e-4) with
    backpropagation through the steps; Adam with cosine decay on random windows of ``a.node_window`` base steps
    of the scaled training trajectories (batch ``a.node_batch``), loss = window forecast MSE in scaled units."""
    torch.manual_seed(a.seed + 29)
    field = mlp(a.latent, (a.node_width, a.node_width), a.latent, torch.nn.Tanh, torch.float32)  # dz/dt = mlp(z)
    model = LatentNeuralODE(ae.encoder, ae.decoder, field, Tsit5(), rtol=1e-4, atol=1e-6,
                            train_autoencoder=False)
    n_traj, T, _ = trajectories.shape
    w = a.node_window
    t = torch.arange(w + 1, dtype=torch.float32) * dt
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.node_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.node_iters)
    gen = torch.Generator().manual_seed(a.seed + 31)
    history = []
    bar = training_bar(a.progress, a.node_iters, "latent NODE", "it")
    for _ in range(a.node_iters):
        traj = torch.randint(n_traj, (a.node_batch,), generator=gen)
        start = torch.randint(T - w, (a.node_batch,), generator=gen)
        x = trajectories[traj[:, None], start[:, None] + torch.arange(w + 1)].transpose(0, 1)  # (w+1, B, n)
        loss = model.loss(x, t, reconstruction_weight=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.3e}", refresh=False)
    if bar is not None:
        bar.close()
    return model, history
