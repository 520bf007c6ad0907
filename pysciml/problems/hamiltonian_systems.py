r"""The Hamiltonians of :mod:`pysciml.problems.hamiltonian`, their exact vector fields and initial-state samplers.

Plain functions on torch tensors, one small group per system; the registry with boxes, paper settings and
samplers is built from them in :mod:`pysciml.problems.hamiltonian`. Conventions:

- ``q`` and ``p`` have shape ``(..., n)`` (``n`` degrees of freedom, leading dimensions are batch dimensions);
  every function keeps their dtype and device.
- ``H(q, p)``, ``T(p)`` and ``V(q)`` return shape ``(...)``.
- ``field(q, p)`` returns ``(dq/dt, dp/dt) = (dH/dp, -dH/dq)``, each ``(..., n)``, **written out by hand**
  (not by autograd; the tests compare the two to 1e-12).
- Initial-state samplers ``initial(n_traj, generator, dtype) -> (n_traj, 2n)`` draw on the CPU from the
  given ``torch.Generator`` (the caller moves the result).

Sources (formulas and constants read from the authors' code, not copied):

- Khoo, Wu, Low, Bressan, "Separable Hamiltonian Neural Networks", arXiv:2309.01069, code
  ``zykhoo/SeparableNNs`` (``all_systems.py``): pendulum, trigonometric, arctan, logarithmic, anisotropic
  oscillator, Henon-Heiles, Toda lattice, spring chains (the constant offsets of ``H`` are theirs too).
- Greydanus, Dzamba, Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019, code
  ``greydanus/hamiltonian-nn`` (``experiment-spring/data.py``, ``experiment-pend/data.py``,
  ``experiment-2body/data.py``): mass-spring, ideal pendulum, two-body, and the samplers of their data sets.
- Tao, "Explicit symplectic approximation of nonseparable Hamiltonians", Phys. Rev. E 94, 043303 (2016):
  the non-separable ``H = (q^2 + 1)(p^2 + 1) / 2``.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

__all__: list[str] = []  # private helpers; the public API is pysciml.problems.hamiltonian


def _half_sq(x: Tensor) -> Tensor:
    """``|x|^2 / 2`` over the last dimension."""
    return 0.5 * (x * x).sum(-1)


# --------------------------------------------------------------------------------- Khoo et al. 2023 systems
def pendulum_T(p: Tensor) -> Tensor:
    return 0.5 * p[..., 0] ** 2


def pendulum_V(q: Tensor) -> Tensor:
    return 1.0 - torch.cos(q[..., 0])


def pendulum_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return p.clone(), -torch.sin(q)


def trigonometric_T(p: Tensor) -> Tensor:
    return torch.cos(p[..., 0]) ** 2 - 1.0


def trigonometric_V(q: Tensor) -> Tensor:
    return torch.sin(q[..., 0]) ** 2


def trigonometric_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    # d(cos^2 p)/dp = -2 sin p cos p, d(sin^2 q)/dq = 2 sin q cos q
    return -2.0 * torch.sin(p) * torch.cos(p), -2.0 * torch.sin(q) * torch.cos(q)


def arctan_T(p: Tensor) -> Tensor:
    return torch.atan(p[..., 0] ** 2)


def arctan_V(q: Tensor) -> Tensor:
    return torch.atan(q[..., 0] ** 2)


def arctan_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return 2.0 * p / (1.0 + p**4), -2.0 * q / (1.0 + q**4)


def logarithmic_T(p: Tensor) -> Tensor:
    return -p[..., 0] + torch.log(p[..., 0] ** 3) + 1.0


def logarithmic_V(q: Tensor) -> Tensor:
    # the authors' H = q - ln q^2 - p + ln p^3 + 2 (H(1, 1) = 2, their anchor H0); their PE and KE sum to H - 2,
    # so V here is their PE + 2 and T + V = H
    return q[..., 0] - torch.log(q[..., 0] ** 2) + 1.0


def logarithmic_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return -1.0 + 3.0 / p, -1.0 + 2.0 / q


_ANISO_QUARTIC = 0.05
"""Coefficient ``c`` of the quartic term ``c q2^4 / 4`` of the anisotropic oscillator (SeparableNNs)."""


def anisotropic_T(p: Tensor) -> Tensor:
    return torch.sqrt((p * p).sum(-1) + 1.0) - 1.0


def anisotropic_V(q: Tensor) -> Tensor:
    return _half_sq(q) + 0.25 * _ANISO_QUARTIC * q[..., 1] ** 4


def anisotropic_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    dq = p / torch.sqrt((p * p).sum(-1, keepdim=True) + 1.0)
    dp = -q - torch.stack((torch.zeros_like(q[..., 0]), _ANISO_QUARTIC * q[..., 1] ** 3), dim=-1)
    return dq, dp


def kinetic_T(p: Tensor) -> Tensor:
    """Unit-mass kinetic energy ``|p|^2 / 2``."""
    return _half_sq(p)


def henon_heiles_V(q: Tensor) -> Tensor:
    q1, q2 = q[..., 0], q[..., 1]
    return _half_sq(q) + q1**2 * q2 - q2**3 / 3.0


def henon_heiles_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    q1, q2 = q[..., 0], q[..., 1]
    dp = torch.stack((-q1 - 2.0 * q1 * q2, -q2 - q1**2 + q2**2), dim=-1)
    return p.clone(), dp


def toda_V(q: Tensor) -> Tensor:
    # periodic lattice: sum_i exp(q_i - q_{i+1}) with q_n = q_0, minus n so that V(0) = 0
    return torch.exp(q - torch.roll(q, -1, dims=-1)).sum(-1) - q.shape[-1]


def toda_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    e = torch.exp(q - torch.roll(q, -1, dims=-1))  # e_i = exp(q_i - q_{i+1})
    return p.clone(), torch.roll(e, 1, dims=-1) - e  # -dV/dq_i = e_{i-1} - e_i


def chain_V(q: Tensor) -> Tensor:
    # free-ended chain of unit masses and unit springs: sum_i (q_{i+1} - q_i)^2 / 2
    return _half_sq(torch.diff(q, dim=-1))


def chain_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    d = torch.diff(q, dim=-1)  # (..., n-1), d_i = q_{i+1} - q_i
    zero = torch.zeros_like(q[..., :1])
    # -dV/dq_i = d_i - d_{i-1} (d_{-1} = d_{n-1} = 0: free ends)
    return p.clone(), torch.cat((d, zero), dim=-1) - torch.cat((zero, d), dim=-1)


# ---------------------------------------------------------------------------- Greydanus et al. 2019 systems
def spring_T(p: Tensor) -> Tensor:
    return p[..., 0] ** 2


def spring_V(q: Tensor) -> Tensor:
    return q[..., 0] ** 2


def spring_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return 2.0 * p, -2.0 * q


def ideal_pendulum_V(q: Tensor) -> Tensor:
    # Greydanus et al.'s final pendulum (experiment-pend/data.py, the version behind their published numbers)
    return 3.0 * (1.0 - torch.cos(q[..., 0]))


def ideal_pendulum_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return 2.0 * p, -3.0 * torch.sin(q)


DAMPING = 0.1
"""Friction coefficient ``gamma`` of ``damped_pendulum``: ``dp/dt = -3 sin q - gamma p``."""


def damped_pendulum_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return 2.0 * p, -3.0 * torch.sin(q) - DAMPING * p


def two_body_V(q: Tensor) -> Tensor:
    # q = (x1, y1, x2, y2), unit masses, G = 1: V = -G m1 m2 / |r1 - r2|
    r = q[..., 0:2] - q[..., 2:4]
    return -1.0 / torch.sqrt((r * r).sum(-1))


def two_body_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    r = q[..., 0:2] - q[..., 2:4]
    d3 = (r * r).sum(-1, keepdim=True) ** 1.5
    force = -r / d3  # on body 1; body 2 feels the opposite
    return p.clone(), torch.cat((force, -force), dim=-1)


def tao_H(q: Tensor, p: Tensor) -> Tensor:
    return 0.5 * (q[..., 0] ** 2 + 1.0) * (p[..., 0] ** 2 + 1.0)


def tao_field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    return p * (q * q + 1.0), -q * (p * p + 1.0)


# ----------------------------------------------------------------------------------- initial-state samplers
def ring_sampler(r_min: float, r_max: float):
    """Greydanus's mass-spring / pendulum initial states: a direction from a uniform draw in ``[-1, 1]^2``,
    scaled to a radius uniform in ``[r_min, r_max]`` (``get_trajectory`` in their ``data.py``)."""

    def initial(n_traj: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
        y = torch.rand(n_traj, 2, generator=gen, dtype=dtype) * 2.0 - 1.0
        radius = torch.rand(n_traj, 1, generator=gen, dtype=dtype) * (r_max - r_min) + r_min
        return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True) * radius

    return initial


TWO_BODY_ORBIT_NOISE = 0.05
TWO_BODY_RADIUS = (0.5, 1.5)


def two_body_initial(n_traj: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Greydanus's near-circular two-body orbits (``random_config`` in ``experiment-2body/data.py``): body 1
    at ``r`` uniform in ``[0.5, 1.5]^2``, body 2 at ``-r``; velocities of the circular orbit about the centre
    of mass (speed ``1 / (2 sqrt|r|)``, perpendicular to ``r``) scaled by ``1 + 0.05 N(0, 1)``."""
    lo, hi = TWO_BODY_RADIUS
    pos = torch.rand(n_traj, 2, generator=gen, dtype=dtype) * (hi - lo) + lo
    r = torch.linalg.vector_norm(pos, dim=-1, keepdim=True)
    vel = torch.stack((-pos[:, 1], pos[:, 0]), dim=-1) / (2.0 * r**1.5)
    vel = vel * (1.0 + TWO_BODY_ORBIT_NOISE * torch.randn(n_traj, 1, generator=gen, dtype=dtype))
    return torch.cat((pos, -pos, vel, -vel), dim=-1)


PI2 = 2.0 * math.pi
