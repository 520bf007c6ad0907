"""Lagrange multipliers of LySep's couplings (augmented Lagrangian), a mixin of
:class:`pysciml.pinn.lysep.LySep`.

Each coupling gap g (a linear or activation coupling, values, gradients or Laplacians) with penalty weight
c = rho_k omega_k (or gamma_k omega_k) and multiplier lambda enters the loss as
``c |g|^2 + <lambda, g> = c |g + u|^2 - c |u|^2`` with the scaled multiplier ``u = lambda / (2 c)``; the
block updates then see shifted targets, and after a sweep ``u += g`` (``lambda += 2 c g``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__: list[str] = []


class _Multipliers:
    """Scaled multipliers ``shift_lin[k]`` / ``shift_act[k]`` (value, gradient, Laplacian; None where the
    variable does not exist or multipliers are off). Uses LySep's attributes (``rho``, ``gamma``, ``omega``,
    ``multipliers``, the auxiliaries) and gap methods; not usable on its own."""

    def _reset_multipliers(self) -> None:
        self.shift_lin: list[list[Tensor | None]] = [[None] * 3 for _ in range(self.n_layers)]
        self.shift_act: list[list[Tensor | None]] = [[None] * 3 for _ in range(self.n_layers - 1)]
        if not self.multipliers:
            return
        for k in range(self.n_layers):
            self.shift_lin[k] = [torch.zeros_like(t) if t is not None else None for t in self._linear_gap(k)]
            if k < self.n_layers - 1:
                gaps = self._activation_gap(k, self.z[k], self.dz[k] if self.order >= 1 else None,
                                            self.lz[k] if self.order >= 2 else None)
                self.shift_act[k] = [torch.zeros_like(t) if t is not None else None for t in gaps]

    def _coupling_weights(self) -> tuple[list[float], list[float]]:
        return ([r * o for r, o in zip(self.rho, self.omega, strict=True)],
                [g * o for g, o in zip(self.gamma[:-1], self.omega[:-1], strict=True)])

    def _rescale_multipliers(self, old: tuple[list[float], list[float]]) -> None:
        """Keep lambda fixed when rho, gamma or omega change (the scaled shifts u = lambda / (2 c) follow)."""
        if not self.multipliers:
            return
        new = self._coupling_weights()
        for shifts, c_old, c_new in ((self.shift_lin, old[0], new[0]), (self.shift_act, old[1], new[1])):
            for k, trio in enumerate(shifts):
                shifts[k] = [t * (c_old[k] / c_new[k]) if t is not None else None for t in trio]

    def _update_multipliers(self) -> None:
        """Scaled dual ascent u += gap for every coupling (lambda += 2 rho omega gap)."""
        for k in range(self.n_layers):
            self.shift_lin[k] = [u + g if u is not None else None for u, g in zip(
                self.shift_lin[k], self._linear_gap(k), strict=True)]
            if k < self.n_layers - 1:
                gaps = self._activation_gap(k, self.z[k], self.dz[k] if self.order >= 1 else None,
                                            self.lz[k] if self.order >= 2 else None)
                self.shift_act[k] = [u + g if u is not None else None for u, g in zip(
                    self.shift_act[k], gaps, strict=True)]

    @staticmethod
    def _plus(t: Tensor | None, u: Tensor | None) -> Tensor | None:
        return t if t is None or u is None else t + u

    @staticmethod
    def _minus(t: Tensor | None, u: Tensor | None) -> Tensor | None:
        return t if t is None or u is None else t - u

    def _augmented(self, gaps: tuple[Tensor, Tensor | None, Tensor | None], shifts: list[Tensor | None]
                   ) -> float:
        """sum over kinds of |gap + u|^2 - |u|^2 (= |gap|^2 without multipliers), weighted like the gaps."""
        total = sum(self._gap_terms(tuple(self._plus(g, u) for g, u in zip(gaps, shifts, strict=True))).values())
        if any(u is not None for u in shifts):
            total = total - sum(self._gap_terms(tuple(shifts)).values())
        return float(total)
