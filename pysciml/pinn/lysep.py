"""LySep: the layer-separation model with auxiliary variables (Liu & Gu, arXiv 2507.12766, J. Comput. Phys.
2025; self-adaptive penalty weights from Ng, Liu & Gu, arXiv 2504.21501).

Every layer's pre-activation z_k, post-activation a_k and their gradients and Laplacians at the collocation
points become free variables; the PDE residual and the Dirichlet misfit are written on the output layer's
variables, and quadratic penalties couple neighbouring layers only. Training alternates between blocks:
layer weights by least squares, output and post-activation variables in closed form, pre-activation
variables by a few L-BFGS steps, then the penalty weights. The formulation, with every choice the public
paper text does not fix, is on the documentation page ``docs/lysep.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._lstsq import lstsq
from ..errors import InputError
from .lysep_multipliers import _Multipliers
from .lysep_ops import ACTIVATIONS, Activation, LayerValues, LinearPDE, Sine, mlp, network_layers, propagate
from .lysep_results import LySepConsistency, LySepResult

__all__ = ["LySep", "LySepResult", "LySepConsistency", "LinearPDE", "Sine", "mlp", "propagate",
           "ACTIVATIONS", "Activation"]

_KINDS = ("value", "gradient", "laplacian")


def _per_layer(value: float | Sequence[float], n: int, name: str) -> list[float]:
    vals = [float(value)] * n if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(vals) != n:
        raise InputError(f"{name}: expected a number or {n} numbers (one per layer), got {len(vals)}")
    if any(not (v > 0 and v < float("inf")) for v in vals):
        raise InputError(f"{name}: weights must be positive and finite, got {vals}")
    return vals


class LySep(_Multipliers):
    """The layer-separation model for a fully connected network and a linear PDE with Dirichlet data.

    Args:
        network: ``nn.Sequential`` of ``Linear, act, ..., Linear`` with one output (see :func:`mlp`); smooth
            activations (``nn.Tanh``, ``nn.Sigmoid``, ``nn.Softplus()``, :class:`Sine`). Its weights are copied;
            the network itself is not changed.
        pde: the operator and source, a :class:`LinearPDE`.
        interior: collocation points (N_i, d) inside the domain.
        boundary: points (N_b, d) on the Dirichlet boundary (N_b >= 0; at least one for a unique solution).
        boundary_value: g, a callable (N_b, d) -> (N_b,) or (N_b, 1), a tensor (N_b,), or a number.
        boundary_weight: lambda_b, weight of the boundary misfit relative to the residual (both means).
        penalty: rho_k of the linear couplings z_k = W_k a_{k-1} + b_k, one number or one per Linear layer.
        activation_penalty: gamma_k of the activation couplings a_k = s(z_k), one number or one per hidden
            layer.
        adaptive: multiply the weights of layer k by omega_k = prod_{j>k} ||W_j||_F^2 (Ng, Liu, Gu), refreshed
            every ``adapt_every`` iterations of :meth:`fit`; False keeps omega_k = 1.
        ridge: Tikhonov weight mu of the layer least-squares solves (of ||[W_k, b_k]||_F^2).
        proximal: weight tau of a proximal term tau ||[W_k, b_k] - [W_k, b_k]_old||_F^2 in the same solves
            (0: none); it keeps a weight update from jumping (e.g. the output layer to a huge least-squares
            fit on the initial features, which then freezes the lower layers through omega).
        inner_steps: L-BFGS iterations per pre-activation update.
        multipliers: add Lagrange multipliers to every coupling (augmented Lagrangian, updated after each
            sweep by lambda += 2 rho omega gap), so the couplings can close at finite penalty weights.

    All tensors live on ``interior``'s dtype and device; float64 is recommended (closed-form solves).
    """

    def __init__(self, network: nn.Module, pde: LinearPDE, interior: Tensor, boundary: Tensor,
                 boundary_value: Callable[[Tensor], Tensor] | Tensor | float, *, boundary_weight: float = 1.0,
                 penalty: float | Sequence[float] = 1.0, activation_penalty: float | Sequence[float] = 1.0,
                 adaptive: bool = True, ridge: float = 1e-8, proximal: float = 0.0, inner_steps: int = 10,
                 multipliers: bool = False) -> None:
        if not isinstance(pde, LinearPDE):
            raise InputError("pde: expected a pysciml.pinn.lysep.LinearPDE")
        if not isinstance(interior, Tensor) or interior.dim() != 2 or interior.shape[0] < 1:
            raise InputError("interior: expected a tensor of collocation points, shape (N_i, d) with N_i >= 1")
        if not interior.is_floating_point():
            raise InputError("interior: expected a floating-point tensor (float64 recommended)")
        if not isinstance(boundary, Tensor) or boundary.dim() != 2 or boundary.shape[1] != interior.shape[1]:
            raise InputError(f"boundary: expected a tensor (N_b, {interior.shape[1]}) of boundary points")
        if not (boundary_weight > 0) or not (ridge >= 0) or not (proximal >= 0) or int(inner_steps) < 1:
            raise InputError("boundary_weight > 0, ridge >= 0, proximal >= 0 and inner_steps >= 1 are required")
        weights, biases, acts = network_layers(network)
        d = interior.shape[1]
        if weights[0].shape[1] != d:
            raise InputError(f"network: first Linear takes {weights[0].shape[1]} inputs but the points have d={d}")
        dtype, device = interior.dtype, interior.device
        self.pde, self.activations = pde, acts
        self.weights = [w.to(dtype=dtype, device=device) for w in weights]
        self.biases = [b.to(dtype=dtype, device=device) for b in biases]
        self.n_layers = len(self.weights)
        self.order = pde.order
        self.n_interior, self.n_boundary = interior.shape[0], boundary.shape[0]
        self.points = torch.cat([interior, boundary.to(dtype=dtype, device=device)]).detach()
        self.boundary_target = self._boundary_values(boundary_value, self.points[self.n_interior:])
        self.coef = pde.coefficients(self.points[:self.n_interior])
        self.boundary_weight = float(boundary_weight)
        self.point_weight = torch.cat([
            torch.full((self.n_interior,), 1.0 / self.n_interior, dtype=dtype, device=device),
            torch.full((self.n_boundary,), self.boundary_weight / max(self.n_boundary, 1), dtype=dtype,
                       device=device)])
        self.rho = _per_layer(penalty, self.n_layers, "penalty")
        self.gamma = _per_layer(activation_penalty, self.n_layers - 1, "activation_penalty") + [0.0]
        self.adaptive, self.ridge, self.inner_steps = bool(adaptive), float(ridge), int(inner_steps)
        self.proximal = float(proximal)
        self.multipliers = bool(multipliers)
        self.omega = [1.0] * self.n_layers
        self.update_penalty_weights()
        self.reset_auxiliaries()

    # ------------------------------------------------------------------ set-up and conversions
    def _boundary_values(self, value: Callable[[Tensor], Tensor] | Tensor | float, xb: Tensor) -> Tensor:
        if callable(value):
            out = torch.as_tensor(value(xb), dtype=xb.dtype, device=xb.device)
        else:
            out = torch.as_tensor(value, dtype=xb.dtype, device=xb.device)
            if out.dim() == 0:
                out = out.expand(xb.shape[0])
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (xb.shape[0],):
            raise InputError(f"boundary_value: expected shape ({xb.shape[0]},) or ({xb.shape[0]}, 1), got "
                             f"{tuple(out.shape)}")
        return out.detach()

    def forward_network(self) -> LayerValues:
        """The plain network's layer values and derivatives at all points (derivatives at interior points)."""
        return propagate(self.weights, self.biases, self.activations, self.points, order=self.order,
                         n_derivative=self.n_interior)

    def reset_auxiliaries(self) -> None:
        """Set every auxiliary variable from the plain network (all couplings then hold exactly) and the
        multipliers (if any) to zero."""
        v = self.forward_network()
        self.z, self.a = [t.clone() for t in v.z], [t.clone() for t in v.a]
        self.dz, self.da = [t.clone() for t in v.dz], [t.clone() for t in v.da]
        self.lz, self.la = [t.clone() for t in v.lz], [t.clone() for t in v.la]
        self._reset_multipliers()

    def to_network(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` carrying LySep's current weights (a fresh module, same dtype/device)."""
        layers: list[nn.Module] = []
        modules = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "sin": Sine, "softplus": nn.Softplus}
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            lin = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype, device=w.device)
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            layers.append(lin)
            if k < self.n_layers - 1:
                layers.append(modules[self.activations[k].name]())
        return nn.Sequential(*layers)

    def update_penalty_weights(self) -> list[float]:
        """Refresh omega_k = prod_{j>k} ||W_j||_F^2 (all 1 when ``adaptive=False``); returns them."""
        if self.adaptive:
            old = self._coupling_weights()
            sq = [float((w * w).sum()) for w in self.weights]
            om, acc = [1.0] * self.n_layers, 1.0
            for k in range(self.n_layers - 1, -1, -1):
                om[k] = acc
                acc *= sq[k]
            self.omega = om
            if hasattr(self, "shift_lin"):
                self._rescale_multipliers(old)
        return list(self.omega)

    # ------------------------------------------------------------------ losses
    def _in(self, k: int) -> Tensor:
        """Input values a_{k-1} of Linear layer k at all points."""
        return self.points if k == 0 else self.a[k - 1]

    def _din(self, k: int) -> Tensor | None:
        if self.order < 1:
            return None
        if k == 0:
            d = self.points.shape[1]
            return torch.eye(d, dtype=self.points.dtype, device=self.points.device).expand(self.n_interior, -1, -1)
        return self.da[k - 1]

    def _lin(self, k: int) -> Tensor | None:
        if self.order < 2:
            return None
        if k == 0:
            return torch.zeros(self.n_interior, self.points.shape[1], dtype=self.points.dtype,
                               device=self.points.device)
        return self.la[k - 1]

    def _pde_residual(self, u: Tensor, g: Tensor | None, h: Tensor | None) -> Tensor:
        a, v, c, f = self.coef
        r = c * u - f
        if g is not None:
            r = r + (v * g).sum(-1)
        if h is not None:
            r = r - a * h
        return r

    def _network_residual(self, vals: LayerValues) -> tuple[Tensor, Tensor]:
        ni = self.n_interior
        u = vals.z[-1][:, 0]
        g = vals.dz[-1][:, 0, :] if self.order >= 1 else None
        h = vals.lz[-1][:, 0] if self.order >= 2 else None
        return self._pde_residual(u[:ni], g, h), u[ni:] - self.boundary_target

    def _mean_sq(self, t: Tensor) -> Tensor:
        return (t * t).sum() / max(t.shape[0], 1)

    def _value_sq(self, t: Tensor) -> Tensor:
        """Weighted sum of squares of a value gap (N, n): interior points weigh 1/N_i, boundary points
        lambda_b/N_b, the weights of the loss terms the points belong to."""
        return (self.point_weight[:, None] * t * t).sum()

    def _linear_gap(self, k: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        w, b = self.weights[k], self.biases[k]
        gv = self.z[k] - torch.addmm(b, self._in(k), w.T)
        din, lin = self._din(k), self._lin(k)
        gd = self.dz[k] - torch.einsum("ij,njk->nik", w, din) if din is not None else None
        gl = self.lz[k] - lin @ w.T if lin is not None else None
        return gv, gd, gl

    def _activation_gap(self, k: int, z: Tensor, dz: Tensor | None, lz: Tensor | None
                        ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        s, s1, s2 = self.activations[k].all(z)
        ni = self.n_interior
        gv = self.a[k] - s
        gd = self.da[k] - s1[:ni, :, None] * dz if dz is not None else None
        gl = self.la[k] - (s2[:ni] * (dz * dz).sum(-1) + s1[:ni] * lz) if lz is not None else None
        return gv, gd, gl

    def _gap_terms(self, gaps: tuple[Tensor, Tensor | None, Tensor | None]) -> dict[str, Tensor]:
        fns = (self._value_sq, self._mean_sq, self._mean_sq)
        return {kind: fn(g) for kind, fn, g in zip(_KINDS, fns, gaps, strict=True) if g is not None}

    def loss(self) -> dict[str, float]:
        """The LySep loss and its terms on the current variables.

        Returns:
            dict with ``residual`` (mean r^2 on the output variables), ``boundary`` (lambda_b * mean misfit^2),
            ``linear_{k}_{kind}`` and ``activation_{k}_{kind}`` (unweighted mean squared coupling gaps),
            ``penalty`` (their weighted sum rho_k omega_k ... + gamma_k omega_k ..., with the multiplier terms
            when ``multipliers=True``) and ``total``.
        """
        ni, out = self.n_interior, {}
        u = self.z[-1][:, 0]
        g = self.dz[-1][:, 0, :] if self.order >= 1 else None
        h = self.lz[-1][:, 0] if self.order >= 2 else None
        out["residual"] = float(self._mean_sq(self._pde_residual(u[:ni], g, h)))
        out["boundary"] = self.boundary_weight * float(self._mean_sq(u[ni:] - self.boundary_target))
        pen = 0.0
        for k in range(self.n_layers):
            gaps = self._linear_gap(k)
            for kind, val in self._gap_terms(gaps).items():
                out[f"linear_{k}_{kind}"] = float(val)
            pen += self.rho[k] * self.omega[k] * self._augmented(gaps, self.shift_lin[k])
            if k < self.n_layers - 1:
                dz = self.dz[k] if self.order >= 1 else None
                lz = self.lz[k] if self.order >= 2 else None
                gaps = self._activation_gap(k, self.z[k], dz, lz)
                for kind, val in self._gap_terms(gaps).items():
                    out[f"activation_{k}_{kind}"] = float(val)
                pen += self.gamma[k] * self.omega[k] * self._augmented(gaps, self.shift_act[k])
        out["penalty"] = pen
        out["total"] = out["residual"] + out["boundary"] + pen
        return out

    def network_loss(self) -> dict[str, float]:
        """J_e, the original PINN loss of the plain network with the current weights:
        ``mean(r^2) + lambda_b * mean((u - g)^2)``; dict with ``residual``, ``boundary``, ``total``."""
        r, e = self._network_residual(self.forward_network())
        res, bnd = float(self._mean_sq(r)), self.boundary_weight * float(self._mean_sq(e))
        return {"residual": res, "boundary": bnd, "total": res + bnd}

    # ------------------------------------------------------------------ block updates
    def layer_least_squares(self, k: int) -> tuple[Tensor, Tensor]:
        """The least-squares system of Linear layer k's weights: (design M, target T) such that
        theta = argmin ||M theta - T||_F^2 with theta = [W_k^T; b_k] of shape (n_{k-1} + 1, n_k).

        Rows: values at all N points (scaled by the square roots of the point weights: N_i^-1/2 inside,
        (lambda_b / N_b)^1/2 on the boundary), gradients (M * d rows) and Laplacians (M rows) at the
        interior points (scaled by N_i^-1/2), then sqrt(ridge) * I (Tikhonov).
        """
        if not 0 <= k < self.n_layers:
            raise InputError(f"k: layer index must be in [0, {self.n_layers - 1}], got {k}")
        x = self._in(k)
        ni, sw = self.n_interior, self.point_weight.sqrt()[:, None]
        blocks = [torch.cat([x, torch.ones_like(x[:, :1])], 1) * sw]
        su, sd, sl = self.shift_lin[k]
        targets = [self._plus(self.z[k], su) * sw]
        din, lin = self._din(k), self._lin(k)
        if din is not None:
            rows = din.transpose(1, 2).reshape(-1, din.shape[1])
            blocks.append(torch.cat([rows, torch.zeros_like(rows[:, :1])], 1) / ni ** 0.5)
            tgt = self._plus(self.dz[k], sd)
            targets.append(tgt.transpose(1, 2).reshape(-1, tgt.shape[1]) / ni ** 0.5)
        if lin is not None:
            blocks.append(torch.cat([lin, torch.zeros_like(lin[:, :1])], 1) / ni ** 0.5)
            targets.append(self._plus(self.lz[k], sl) / ni ** 0.5)
        p = x.shape[1] + 1
        if self.ridge > 0:
            blocks.append(self.ridge ** 0.5 * torch.eye(p, dtype=x.dtype, device=x.device))
            targets.append(torch.zeros(p, self.z[k].shape[1], dtype=x.dtype, device=x.device))
        if self.proximal > 0:
            blocks.append(self.proximal ** 0.5 * torch.eye(p, dtype=x.dtype, device=x.device))
            targets.append(self.proximal ** 0.5 * torch.cat([self.weights[k].T, self.biases[k][None]]))
        return torch.cat(blocks), torch.cat(targets)

    def _update_weights(self, k: int) -> None:
        m, t = self.layer_least_squares(k)
        # solved in float64 whatever the model's dtype: in float32 the rounding of ill-conditioned designs
        # made training erratic (rel. L2 after 10 sweeps anywhere in 0.04-0.8 from run to run)
        theta = lstsq(m.double(), t.double()).to(m.dtype)
        self.weights[k] = theta[:-1].T.contiguous()
        self.biases[k] = theta[-1].clone()

    def _update_output(self) -> None:
        """Closed form for the output variables (u, grad u, Lap u): pointwise minimisers of
        (residual^2 + rho_L |gaps|^2) / N_i inside and lambda_b (misfit^2 + rho_L gap^2) / N_b on the boundary."""
        k, ni = self.n_layers - 1, self.n_interior
        rho = self.rho[k] * self.omega[k]
        w, b = self.weights[k], self.biases[k]
        su, sd, sl = self.shift_lin[k]
        ubar = self._minus(torch.addmm(b, self._in(k), w.T), su)[:, 0]
        a, v, c, f = self.coef
        cols, bars = [c], [ubar[:ni]]
        # per point (times N_i): (p.y - f)^2 + rho |y - ybar|^2, minimised by Sherman-Morrison
        dinv = [torch.full_like(c, 1.0 / rho)]
        if self.order >= 1:
            gbar = self._minus(torch.einsum("ij,njk->nik", w, self._din(k)), sd)[:, 0, :]
            cols.append(v)
            bars.append(gbar)
            dinv.append(torch.full_like(v, 1.0 / rho))
        if self.order >= 2:
            hbar = self._minus(self._lin(k) @ w.T, sl)[:, 0]
            cols.append(-a)
            bars.append(hbar)
            dinv.append(torch.full_like(a, 1.0 / rho))
        p = torch.cat([t.reshape(ni, -1) for t in cols], 1)
        y0 = torch.cat([t.reshape(ni, -1) for t in bars], 1)
        di = torch.cat([t.reshape(ni, -1) for t in dinv], 1)
        step = ((p * y0).sum(1) - f) / (1 + (p * di * p).sum(1))
        y = y0 - di * p * step[:, None]
        z = self.z[k].clone()
        z[:ni, 0] = y[:, 0]
        if self.n_boundary:
            z[ni:, 0] = (self.boundary_target + rho * ubar[ni:]) / (1 + rho)
        self.z[k] = z
        col = 1
        if self.order >= 1:
            d = self.points.shape[1]
            self.dz[k] = y[:, col:col + d].unsqueeze(1).contiguous()
            col += d
        if self.order >= 2:
            self.lz[k] = y[:, col:col + 1].contiguous()

    def _update_post_activation(self, k: int) -> None:
        """Closed form for a_k, Da_k, La_k (hidden layer k): they enter the activation coupling of layer k and
        the linear coupling of layer k+1, both quadratic."""
        gam, rho = self.gamma[k] * self.omega[k], self.rho[k + 1] * self.omega[k + 1]
        w, b = self.weights[k + 1], self.biases[k + 1]
        mat = rho * (w.T @ w) + gam * torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
        chol = torch.linalg.cholesky(mat)
        s, s1, s2 = self.activations[k].all(self.z[k])
        ni = self.n_interior
        av, ad, al = self.shift_act[k]
        uv, ud, ul = self.shift_lin[k + 1]

        def solve(rhs: Tensor) -> Tensor:  # rows x with x mat = rhs (mat symmetric)
            return torch.cholesky_solve(rhs.T, chol).T

        self.a[k] = solve(gam * self._minus(s, av) + rho * (self._plus(self.z[k + 1], uv) - b) @ w)
        if self.order >= 1:
            dz = self.dz[k]
            tgt = (gam * self._minus(s1[:ni, :, None] * dz, ad)
                   + rho * torch.einsum("nik,ij->njk", self._plus(self.dz[k + 1], ud), w))
            shp = tgt.shape
            self.da[k] = solve(tgt.transpose(1, 2).reshape(-1, shp[1])).reshape(shp[0], shp[2], shp[1]
                                                                                ).transpose(1, 2).contiguous()
        if self.order >= 2:
            tgt = (gam * self._minus(s2[:ni] * (self.dz[k] ** 2).sum(-1) + s1[:ni] * self.lz[k], al)
                   + rho * self._plus(self.lz[k + 1], ul) @ w)
            self.la[k] = solve(tgt)

    def _update_pre_activation(self, k: int) -> None:
        """A few L-BFGS steps (strong Wolfe, so the block objective does not increase) on z_k, Dz_k, Lz_k of
        hidden layer k: linear coupling of layer k plus activation coupling of layer k (divided by omega_k)."""
        rho, gam = self.rho[k], self.gamma[k]
        w, b = self.weights[k], self.biases[k]
        su, sd, sl = self.shift_lin[k]
        zbar = self._minus(torch.addmm(b, self._in(k), w.T), su)
        din, lin = self._din(k), self._lin(k)
        dbar = self._minus(torch.einsum("ij,njk->nik", w, din), sd) if din is not None else None
        lbar = self._minus(lin @ w.T, sl) if lin is not None else None
        fmt = torch.contiguous_format  # L-BFGS views the gradients flat
        z = self.z[k].clone(memory_format=fmt).requires_grad_(True)
        dz = self.dz[k].clone(memory_format=fmt).requires_grad_(True) if dbar is not None else None
        lz = self.lz[k].clone(memory_format=fmt).requires_grad_(True) if lbar is not None else None
        params = [t for t in (z, dz, lz) if t is not None]

        def objective() -> Tensor:
            val = rho * (self._value_sq(z - zbar))
            if dz is not None:
                val = val + rho * self._mean_sq(dz - dbar)
            if lz is not None:
                val = val + rho * self._mean_sq(lz - lbar)
            gaps = self._activation_gap(k, z, dz, lz)
            shifted = tuple(self._plus(g, u) for g, u in zip(gaps, self.shift_act[k], strict=True))
            for term in self._gap_terms(shifted).values():
                val = val + gam * term
            return val

        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.inner_steps, history_size=10,
                                tolerance_grad=1e-14, tolerance_change=1e-16, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            val = objective()
            val.backward()
            return val

        with torch.enable_grad():
            opt.step(closure)
        self.z[k] = z.detach()
        if dz is not None:
            self.dz[k] = dz.detach()
        if lz is not None:
            self.lz[k] = lz.detach()

    def sweep(self) -> None:
        """One outer iteration: from the output layer down, (output or pre-activation variables of layer k,
        weights of layer k, post-activation variables of layer k-1). Every block update is an exact minimiser
        or (pre-activations) a descent step, so with fixed penalty weights (and no multipliers) the LySep loss
        never increases. With ``multipliers=True`` the multipliers are updated at the end."""
        for k in range(self.n_layers - 1, -1, -1):
            if k == self.n_layers - 1:
                self._update_output()
            else:
                self._update_pre_activation(k)
            self._update_weights(k)
            if k > 0:
                self._update_post_activation(k - 1)
        if self.multipliers:
            self._update_multipliers()

    # ------------------------------------------------------------------ training
    def fit(self, iterations: int = 100, *, tol: float = 0.0, time_limit: float | None = None,
            adapt_every: int = 1, penalty_growth: float = 1.0, penalty_max: float = 1e6,
            reference: Callable[[Tensor], Tensor] | None = None, record_every: int = 1,
            callback: Callable[[int, dict[str, float]], bool | None] | None = None) -> LySepResult:
        """Alternating-direction training: ``iterations`` sweeps (:meth:`sweep`), penalty weights refreshed
        every ``adapt_every`` sweeps (when ``adaptive``).

        Args:
            iterations: maximum number of outer iterations (sweeps).
            tol: stop when the LySep loss decreased by less than ``tol`` (relative) over one sweep; 0 never.
            time_limit: stop after this many seconds.
            adapt_every: refresh omega_k every this many sweeps.
            penalty_growth: after every sweep multiply each rho_k and gamma_k by this factor (>= 1; continuation
                towards consistency), never above ``penalty_max``.
            penalty_max: cap of the grown penalties.
            reference: exact solution u*(x) (N, d) -> (N,) or (N, 1); adds ``rel_l2`` (relative L2 error of
                the plain network at the interior points) to the history.
            record_every: record the history every this many sweeps (and at the last).
            callback: called as ``callback(iteration, record)`` after each recorded sweep; return True to stop.

        Returns:
            :class:`LySepResult`; the model keeps the trained weights (see :meth:`to_network`).
        """
        if int(iterations) < 0 or int(adapt_every) < 1 or int(record_every) < 1 or not tol >= 0:
            raise InputError("iterations >= 0, adapt_every >= 1, record_every >= 1 and tol >= 0 are required")
        if not (penalty_growth >= 1 and penalty_max > 0):
            raise InputError("penalty_growth must be >= 1 and penalty_max > 0")
        ref = None
        if reference is not None:
            xi = self.points[:self.n_interior]
            ref = torch.as_tensor(reference(xi), dtype=xi.dtype, device=xi.device).reshape(-1)
            if ref.shape[0] != self.n_interior:
                raise InputError(f"reference: must return {self.n_interior} values for the interior points")
        result, start = LySepResult(), time.perf_counter()

        def record(it: int, lysep_loss: dict[str, float]) -> dict[str, float]:
            je = self.network_loss()
            rec = {"iter": it, "time": time.perf_counter() - start, "loss_network": je["total"],
                   "residual_network": je["residual"], "boundary_network": je["boundary"],
                   "loss_lysep": lysep_loss["total"], "penalty": lysep_loss["penalty"]}
            if ref is not None:
                u = propagate(self.weights, self.biases, self.activations, self.points[:self.n_interior],
                              order=0).z[-1][:, 0]
                rec["rel_l2"] = float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))
            result.history.append(rec)
            return rec

        with torch.no_grad():
            prev = self.loss()
            record(0, prev)
            for it in range(1, int(iterations) + 1):
                changed = it > 1 and penalty_growth > 1
                if changed:
                    old = self._coupling_weights()
                    self.rho = [min(r * penalty_growth, max(r, penalty_max)) for r in self.rho]
                    self.gamma = [min(g * penalty_growth, max(g, penalty_max)) for g in self.gamma]
                    self._rescale_multipliers(old)
                if self.adaptive and (it - 1) % int(adapt_every) == 0 and it > 1:
                    self.update_penalty_weights()
                    changed = True
                if changed:
                    prev = self.loss()
                self.sweep()
                cur = self.loss()
                result.iterations = it
                last = it == int(iterations)
                stop = None
                if tol > 0 and prev["total"] - cur["total"] <= tol * abs(prev["total"]):
                    stop = "tol"
                elif time_limit is not None and time.perf_counter() - start >= time_limit:
                    stop = "time_limit"
                if it % int(record_every) == 0 or last or stop:
                    rec = record(it, cur)
                    if callback is not None and callback(it, rec):
                        stop = stop or "callback"
                prev = cur
                if stop:
                    result.stop_reason = stop
                    break
        result.seconds = time.perf_counter() - start
        return result

    def pretrain(self, steps: int = 100, lr: float = 1e-3) -> list[float]:
        """A few Adam steps on J_e (the plain PINN loss) from the current weights, then the auxiliary
        variables are reset from the network. A common initialisation; returns the loss per step."""
        if int(steps) < 0 or not lr > 0:
            raise InputError("steps >= 0 and lr > 0 are required")
        params = [t.clone().requires_grad_(True) for t in (*self.weights, *self.biases)]
        opt = torch.optim.Adam(params, lr=lr)
        losses, n = [], self.n_layers
        with torch.enable_grad():
            for _ in range(int(steps)):
                opt.zero_grad()
                vals = propagate(params[:n], params[n:], self.activations, self.points, order=self.order,
                                 n_derivative=self.n_interior)
                r, e = self._network_residual(vals)
                loss = self._mean_sq(r) + self.boundary_weight * self._mean_sq(e)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        self.weights = [p.detach() for p in params[:n]]
        self.biases = [p.detach() for p in params[n:]]
        self.update_penalty_weights()
        self.reset_auxiliaries()
        return losses

    # ------------------------------------------------------------------ checks
    def consistency(self) -> LySepConsistency:
        """Compare the plain network with LySep's weights to LySep's auxiliary variables.

        Returns:
            :class:`LySepConsistency`: max mismatch of every layer's values, gradients and Laplacians, and the
            PDE residual of the network vs the one written on the output variables.
        """
        with torch.no_grad():
            net = self.forward_network()
            mism = {}
            pairs = {"value": (net.z + net.a, self.z + self.a), "gradient": (net.dz + net.da, self.dz + self.da),
                     "laplacian": (net.lz + net.la, self.lz + self.la)}
            for kind, (ns, ls) in pairs.items():
                if ns:
                    mism[kind] = max(float((p - q).abs().max()) if p.numel() else 0.0 for p, q in zip(ns, ls,
                                                                                                     strict=True))
            r_net, e_net = self._network_residual(net)
            ni = self.n_interior
            u = self.z[-1][:, 0]
            r_aux = self._pde_residual(u[:ni], self.dz[-1][:, 0, :] if self.order >= 1 else None,
                                       self.lz[-1][:, 0] if self.order >= 2 else None)
            bdiff = float((net.z[-1][ni:, 0] - u[ni:]).abs().max()) if self.n_boundary else 0.0

            def rms(t: Tensor) -> float:
                return float(torch.sqrt(self._mean_sq(t)))

            return LySepConsistency(max(mism.values()), mism, rms(r_net), rms(r_aux), rms(r_net - r_aux), bdiff)
