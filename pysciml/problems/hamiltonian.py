r"""Hamiltonian systems with analytic ``H``, exact vector fields and samplers, for training and judging HNNs.

A :class:`HamiltonianSystem` bundles a Hamiltonian ``H(q, p)``, its vector field written out by hand, the
sampling box of the Separable-HNN paper (or of Greydanus et al.), the paper's network widths and learning
rate, and samplers: :meth:`~HamiltonianSystem.sample` (uniform states with their exact derivatives),
:meth:`~HamiltonianSystem.grid` (the evaluation grid of the metrics in :mod:`pysciml.analysis.hamiltonian`)
and :func:`trajectories` (solutions of the exact field by pysciml's own ``Vern7``).

State layout everywhere: ``x = cat([q, p], -1)`` of shape ``(..., 2n)``, positions first; leading dimensions
are batch dimensions. Registry: :data:`SYSTEMS`, looked up by :func:`hamiltonian_system`.

| name | n | H(q, p) | box (q; p) | source |
|---|---|---|---|---|
| `pendulum` | 1 | p^2/2 + 1 - cos q | [-2pi, 2pi]; [-1.2, 1.2] | Khoo et al. |
| `trigonometric` | 1 | sin^2 q + cos^2 p - 1 | [-2, 2]; [-2, 2] | Khoo et al. |
| `arctan` | 1 | atan(q^2) + atan(p^2) | [-2, 2]; [-2, 2] | Khoo et al. |
| `logarithmic` | 1 | q - ln q^2 - p + ln p^3 + 2 | [1, 3]; [1, 3] | Khoo et al. |
| `anisotropic_oscillator` | 2 | sqrt(\|p\|^2 + 1) + \|q\|^2/2 + 0.0125 q2^4 - 1 | [-0.5, 0.5]^2; same | Khoo et al. |
| `henon_heiles` | 2 | \|p\|^2/2 + \|q\|^2/2 + q1^2 q2 - q2^3/3 | [-0.5, 0.5]^2; same | Khoo et al. |
| `toda3` | 3 | \|p\|^2/2 + sum_i exp(q_i - q_{i+1}) - 3 (periodic) | [-0.5, 0.5]^3; same | Khoo et al. |
| `spring_chain3` | 3 | \|p\|^2/2 + sum_i (q_{i+1} - q_i)^2 / 2 (free ends) | [-0.5, 0.5]^3; same | Khoo et al. |
| `spring_chain10` | 10 | the same with 10 masses | [-0.5, 0.5]^10; same | Khoo et al. |
| `mass_spring` | 1 | q^2 + p^2 | [-1.2, 1.2]; [-1.2, 1.2] | Greydanus et al. |
| `ideal_pendulum` | 1 | 3 (1 - cos q) + p^2 | [-2.5, 2.5]; [-2.5, 2.5] | Greydanus et al. |
| `damped_pendulum` | 1 | energy 3 (1 - cos q) + p^2, friction -0.1 p in dp/dt | [-2.5, 2.5]; [-2.5, 2.5] | stand-in |
| `two_body` | 4 | \|p\|^2/2 - 1/\|r1 - r2\|, q = (x1, y1, x2, y2) | [-1.5, 1.5]^4; [-0.8, 0.8]^4 | Greydanus et al. |
| `tao_nonseparable` | 1 | (q^2 + 1)(p^2 + 1) / 2 | [-2, 2]; [-2, 2] | Tao 2016 |

Every system but ``tao_nonseparable`` is separable, ``H = T(p) + V(q)``; ``tao_nonseparable`` is included so
that the non-separable paths (learning-bias penalty, ``ImplicitMidpoint``) have a test case.

Notes:
- ``system.hamiltonian`` is ``H(q, p)`` batched over leading dimensions, the signature
  ``pysciml.HamiltonianProblem`` takes: ``HamiltonianProblem(s.hamiltonian, q0, p0, tspan,
  separable=s.separable)`` rolls a system out with the symplectic methods.
- ``logarithmic``: ``(q, p) = (2, 3)`` is a saddle of ``H``; trajectories leave the box and reach the
  singularities at ``q = 0`` or ``p = 0`` in finite time (the paper only samples the field). Keep their
  ``t_span`` short (about 1); a solve into the singularity raises ``SolverError``.
- ``two_body``: its box (positions in ``[-1.5, 1.5]``, momenta in ``[-0.8, 0.8]``) is the range of
  Greydanus et al.'s orbits; uniform samples in it include near-collisions where the field is huge, so train
  on :func:`trajectories` (their protocol) rather than on box samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from ..algorithms import Vern7
from ..errors import InputError
from ..problem import ODEProblem
from ..solve import solve
from . import hamiltonian_systems as _s

__all__ = ["HamiltonianSystem", "SYSTEMS", "hamiltonian_system", "trajectories"]

Tensor = torch.Tensor
Sampler = Callable[[int, torch.Generator, torch.dtype], Tensor]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return value


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise InputError(f"dtype must be a real floating torch dtype (torch.float64, torch.float32), got {dtype!r}.")
    return dtype


def _check_noise(noise: object) -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise InputError(f"noise must be a finite float >= 0 (the Gaussian standard deviation), got {noise!r}.")
    return float(noise)


def _generator(seed: object) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an int (it seeds a torch.Generator for reproducible draws), got {seed!r}.")
    return torch.Generator(device="cpu").manual_seed(seed)


@dataclass(frozen=True)
class HamiltonianSystem:
    """A Hamiltonian system with analytic ``H``, its exact vector field, a sampling box and paper settings.

    Attributes:
        name: registry key (see :data:`SYSTEMS`).
        n: degrees of freedom; the state ``x = (q, p)`` has ``2n`` entries.
        low, high: the sampling box, ``2n`` floats each (``q`` bounds then ``p`` bounds).
        separable: ``H = T(p) + V(q)`` (the explicit symplectic methods need it).
        hamiltonian: ``H(q, p) -> (...)`` on ``q, p`` of shape ``(..., n)``.
        field_qp: the exact field ``(q, p) -> (dq/dt, dp/dt)``, written out by hand.
        kinetic, potential: ``T(p)`` and ``V(q)`` with ``H = T + V`` (``None`` when ``H`` does not split).
        hnn_width, sep_width, lr: the Separable-HNN paper's hidden width of the plain HNN, per-branch width of
            the separable network and Adam learning rate (``None`` for systems not in that paper).
        conservative: ``False`` when the dynamics are not the Hamiltonian field of ``H`` (``damped_pendulum``:
            ``H`` is then the energy, which decays).
        initial: sampler of trajectory initial states ``(n_traj, generator, dtype) -> (n_traj, 2n)`` (the
            source paper's; ``None``: uniform in the box).
        traj_t_span, traj_points: the source's trajectory length and number of saved points, for
            :func:`trajectories` (``None`` where the source uses no trajectories).
        source: where ``H``, the box and the settings come from.
    """

    name: str
    n: int
    low: tuple[float, ...]
    high: tuple[float, ...]
    separable: bool
    hamiltonian: Callable[[Tensor, Tensor], Tensor] = field(repr=False)
    field_qp: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] = field(repr=False)
    kinetic: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    potential: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    hnn_width: int | None = None
    sep_width: int | None = None
    lr: float | None = None
    conservative: bool = True
    initial: Sampler | None = field(default=None, repr=False)
    traj_t_span: tuple[float, float] | None = None
    traj_points: int | None = None
    source: str = field(default="", repr=False)

    @property
    def dim(self) -> int:
        """State size ``2n``."""
        return 2 * self.n

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(q, p)``, each ``(..., n)``, from a state ``x`` of shape ``(..., 2n)``."""
        if not isinstance(x, Tensor) or x.ndim == 0 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"x must be a tensor of shape (..., {self.dim}) = (..., 2n) for {self.name!r} "
                             f"(q then p), got {got}.")
        return x[..., : self.n], x[..., self.n:]

    def H(self, x: Tensor) -> Tensor:
        """Hamiltonian ``H(x)`` of shape ``(...)`` for ``x`` of shape ``(..., 2n)`` (dtype, device of ``x``)."""
        return self.hamiltonian(*self.split(x))

    def vector_field(self, x: Tensor) -> Tensor:
        """Exact ``dx/dt = (dH/dp, -dH/dq)`` (plus friction for ``damped_pendulum``), shape ``(..., 2n)``.

        Written out analytically, not by autograd; differentiable in ``x``.
        """
        return torch.cat(self.field_qp(*self.split(x)), dim=-1)

    def _part(self, fn: Callable[[Tensor], Tensor] | None, y: Tensor, which: str, arg: str) -> Tensor:
        if fn is None:
            raise InputError(f"{which} is only defined for systems whose H splits as T(p) + V(q); "
                             f"{self.name!r} is not separable (use H(x)).")
        if not isinstance(y, Tensor) or y.ndim == 0 or y.shape[-1] != self.n:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise InputError(f"{arg} must be a tensor of shape (..., {self.n}) for {self.name!r}, got {got}.")
        return fn(y)

    def T(self, p: Tensor) -> Tensor:
        """Kinetic part ``T(p)``, shape ``(...)`` for ``p`` of shape ``(..., n)``. InputError if not separable."""
        return self._part(self.kinetic, p, "T(p)", "p")

    def V(self, q: Tensor) -> Tensor:
        """Potential part ``V(q)``, shape ``(...)`` for ``q`` of shape ``(..., n)``. InputError if not separable."""
        return self._part(self.potential, q, "V(q)", "q")

    def box(self, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """``(low, high)`` as ``(2n,)`` tensors."""
        return (torch.tensor(self.low, dtype=dtype, device=device), torch.tensor(self.high, dtype=dtype, device=device))

    def _uniform(self, n: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
        """``(n, 2n)`` states uniform in the box, drawn on the CPU from ``gen``."""
        low, high = self.box(dtype=dtype)
        return low + (high - low) * torch.rand(n, self.dim, generator=gen, dtype=dtype)

    def sample(
        self,
        n_samples: int,
        *,
        seed: int,
        noise: float = 0.0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """States uniform in the box with their exact time derivatives (the Separable-HNN paper's data).

        Args:
            n_samples: number of states (the paper: 512, split 80/20).
            seed: seeds a CPU ``torch.Generator``: the same seed gives the same samples on every device.
            noise: standard deviation of Gaussian noise **added to the derivatives** ``dx`` (the states are
                exact). The paper's released data have none.
            dtype, device: of the returned tensors.

        Returns:
            ``(x, dx)``, each ``(n_samples, 2n)``: ``x`` uniform in ``[low, high]``, ``dx = vector_field(x)``
            (+ noise).
        """
        _check_int(n_samples, "n_samples", 1)
        dtype, noise = _check_dtype(dtype), _check_noise(noise)
        gen = _generator(seed)
        x = self._uniform(n_samples, gen, dtype)
        dx = self.vector_field(x)
        if noise > 0:
            dx = dx + noise * torch.randn(dx.shape, generator=gen, dtype=dtype)
        return x.to(device), dx.to(device)

    def grid(
        self,
        points_per_dim: int = 10,
        max_points: int = 100_000,
        seed: int = 0,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """Evaluation points covering the box: the full tensor grid when it fits, else a Sobol sample.

        The Separable-HNN paper evaluates on the full grid of ``points_per_dim`` equispaced points per
        dimension, endpoints included (``10^d`` points for ``d = 2n``). When ``points_per_dim^d > max_points``
        (``d = 6`` and ``20`` at the defaults) this returns ``max_points`` points of a scrambled Sobol sequence
        in the box instead (``torch.quasirandom.SobolEngine``, scrambled with ``seed``): a quasi-uniform
        estimate of the same box average. Raise ``max_points`` to ``10**6`` for the paper's full 6-D grid.

        Args:
            points_per_dim: grid points per dimension (>= 2).
            max_points: largest number of points returned.
            seed: scrambling seed of the Sobol fallback (the full grid does not use it).
            dtype, device: of the result.

        Returns:
            ``(N, 2n)`` tensor, ``N = points_per_dim^(2n)`` or ``max_points``.
        """
        _check_int(points_per_dim, "points_per_dim", 2)
        _check_int(max_points, "max_points", 1)
        dtype = _check_dtype(dtype)
        low, high = self.box(dtype=dtype)
        if points_per_dim ** self.dim <= max_points:
            bounds = zip(self.low, self.high, strict=True)
            axes = [torch.linspace(lo, hi, points_per_dim, dtype=dtype) for lo, hi in bounds]
            pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, self.dim)
        else:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise InputError(f"seed must be an int (it scrambles the Sobol sample), got {seed!r}.")
            engine = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=seed)
            pts = low + (high - low) * engine.draw(max_points, dtype=dtype)
        return pts.to(device)

    def initial_states(
        self, n_traj: int, *, seed: int, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> Tensor:
        """``(n_traj, 2n)`` trajectory initial states from the source's sampler (see :func:`trajectories`)."""
        _check_int(n_traj, "n_traj", 1)
        dtype, gen = _check_dtype(dtype), _generator(seed)
        if self.initial is not None:
            x0 = self.initial(n_traj, gen, dtype)
        else:
            x0 = self._uniform(n_traj, gen, dtype)
        return x0.to(device)


def trajectories(
    system: HamiltonianSystem | str,
    n_traj: int,
    t_span: tuple[float, float],
    n_points: int,
    *,
    seed: int,
    noise: float = 0.0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    x0: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """Trajectories of the exact vector field, solved by pysciml's ``Vern7`` (one batched solve).

    Initial states (unless ``x0`` is given) come from the source's sampler: for ``mass_spring`` and
    ``ideal_pendulum``/``damped_pendulum`` Greydanus et al.'s ring (a random direction scaled to a radius
    uniform in ``[0.1, 1]`` resp. ``[1.3, 2.3]``), for ``two_body`` their near-circular orbits (see
    ``HamiltonianSystem.initial``), uniform in the box for the others. Their settings are
    ``system.traj_t_span`` / ``system.traj_points`` (mass-spring ``(0, 3)``, 30 points; pendulum ``(0, 3)``,
    45; two-body ``(0, 20)``, 50).

    Args:
        system: a :class:`HamiltonianSystem` or its name.
        n_traj: number of trajectories (must equal ``x0.shape[0]`` when ``x0`` is given).
        t_span: ``(t0, t1)``.
        n_points: saved times, ``linspace(t0, t1, n_points)`` (endpoints included).
        seed: seeds the initial states and the noise (CPU generator: reproducible on every device).
        noise: standard deviation of Gaussian noise **added to the states** ``x`` after the solve, as in
            Greydanus et al.'s data (``dx`` stays the exact field at the clean states).
        rtol, atol: tolerances of the solve (the defaults conserve ``H`` to about 1e-9 over ``t1 - t0 = 20``).
        x0: optional initial states, ``(n_traj, 2n)``.
        dtype, device: of the solve and the results.

    Returns:
        ``(t, x, dx)``: ``t`` of shape ``(n_points,)``; ``x`` and ``dx = vector_field(x_clean)`` of shape
        ``(n_traj, n_points, 2n)``.

    Raises:
        InputError: bad arguments; pysciml.SolverError if the solve fails (e.g. a two-body collision).
    """
    sys_ = hamiltonian_system(system) if isinstance(system, str) else system
    if not isinstance(sys_, HamiltonianSystem):
        raise InputError(f"system must be a HamiltonianSystem or one of the names {sorted(SYSTEMS)}, got {system!r}.")
    _check_int(n_traj, "n_traj", 1)
    _check_int(n_points, "n_points", 2)
    dtype, noise = _check_dtype(dtype), _check_noise(noise)
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise InputError(f"t_span must be a pair of numbers (t0, t1), got {t_span!r}.") from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise InputError(f"t_span must be two different finite times, got {t_span!r}.")
    gen = _generator(seed).manual_seed(seed + 1)  # the noise stream, apart from the initial states' stream
    if x0 is None:
        x0 = sys_.initial_states(n_traj, seed=seed, dtype=dtype)
    else:
        if not isinstance(x0, Tensor) or tuple(x0.shape) != (n_traj, sys_.dim):
            got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise InputError(f"x0 must be a tensor of shape (n_traj, 2n) = ({n_traj}, {sys_.dim}), got {got}.")
        x0 = x0.detach().to(dtype=dtype, device="cpu")
    x0 = x0.to(device)
    t = torch.linspace(t0, t1, n_points, dtype=dtype, device=device)

    def f(_t: Tensor, u: Tensor) -> Tensor:
        return sys_.vector_field(u)

    prob = ODEProblem(f, x0, (t0, t1), batched=True)
    sol = solve(prob, Vern7(), rtol=rtol, atol=atol, saveat=t, throw=True)
    x = sol.u.transpose(0, 1).contiguous()  # (T, B, 2n) -> (B, T, 2n)
    dx = sys_.vector_field(x)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=gen, dtype=dtype).to(device)
    return t, x, dx


# ---------------------------------------------------------------------------------------------- registry
_KHOO = "Khoo et al., arXiv:2309.01069; zykhoo/SeparableNNs all_systems.py"
_GREY = "Greydanus et al., NeurIPS 2019; greydanus/hamiltonian-nn"


def _sep(T: Callable[[Tensor], Tensor], V: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def H(q: Tensor, p: Tensor) -> Tensor:
        return T(p) + V(q)

    return H


def _box(n: int, q: tuple[float, float], p: tuple[float, float]) -> dict[str, tuple[float, ...]]:
    return {"low": (q[0],) * n + (p[0],) * n, "high": (q[1],) * n + (p[1],) * n}


def _separable(name: str, n: int, box: dict, T, V, fld, widths=(None, None, None), **kw) -> HamiltonianSystem:
    hnn, sep, lr = widths
    return HamiltonianSystem(name=name, n=n, separable=True, hamiltonian=_sep(T, V), field_qp=fld, kinetic=T,
                             potential=V, hnn_width=hnn, sep_width=sep, lr=lr, **box, **kw)


_H = (-0.5, 0.5)
_SYSTEM_LIST = [
    _separable("pendulum", 1, _box(1, (-_s.PI2, _s.PI2), (-1.2, 1.2)), _s.pendulum_T, _s.pendulum_V,
               _s.pendulum_field, (16, 11, 1e-3), source=_KHOO),
    _separable("trigonometric", 1, _box(1, (-2.0, 2.0), (-2.0, 2.0)), _s.trigonometric_T, _s.trigonometric_V,
               _s.trigonometric_field, (16, 11, 1e-3), source=_KHOO),
    _separable("arctan", 1, _box(1, (-2.0, 2.0), (-2.0, 2.0)), _s.arctan_T, _s.arctan_V, _s.arctan_field,
               (16, 11, 1e-3), source=_KHOO),
    _separable("logarithmic", 1, _box(1, (1.0, 3.0), (1.0, 3.0)), _s.logarithmic_T, _s.logarithmic_V,
               _s.logarithmic_field, (16, 11, 1e-3), source=_KHOO),
    _separable("anisotropic_oscillator", 2, _box(2, _H, _H), _s.anisotropic_T, _s.anisotropic_V,
               _s.anisotropic_field, (32, 22, 1e-2), source=_KHOO + " (anisotropicoscillator2D)"),
    _separable("henon_heiles", 2, _box(2, _H, _H), _s.kinetic_T, _s.henon_heiles_V, _s.henon_heiles_field,
               (32, 22, 1e-2), source=_KHOO + " (henonheiles)"),
    _separable("toda3", 3, _box(3, _H, _H), _s.kinetic_T, _s.toda_V, _s.toda_field, (31, 22, 1e-2),
               source=_KHOO + " (todalattice)"),
    _separable("spring_chain3", 3, _box(3, _H, _H), _s.kinetic_T, _s.chain_V, _s.chain_field, (31, 22, 1e-2),
               source=_KHOO + " (coupledoscillator)"),
    _separable("spring_chain10", 10, _box(10, _H, _H), _s.kinetic_T, _s.chain_V, _s.chain_field,
               (44, 32, 1e-2), source=_KHOO + " (coupledoscillator10)"),
    _separable("mass_spring", 1, _box(1, (-1.2, 1.2), (-1.2, 1.2)), _s.spring_T, _s.spring_V, _s.spring_field,
               initial=_s.ring_sampler(0.1, 1.0), traj_t_span=(0.0, 3.0), traj_points=30,
               source=_GREY + " experiment-spring/data.py (box: their get_field range)"),
    _separable("ideal_pendulum", 1, _box(1, (-2.5, 2.5), (-2.5, 2.5)), _s.spring_T, _s.ideal_pendulum_V,
               _s.ideal_pendulum_field, initial=_s.ring_sampler(1.3, 2.3), traj_t_span=(0.0, 3.0),
               traj_points=45, source=_GREY + " experiment-pend/data.py, final version: H = 3(1 - cos q) + p^2, "
                                             "radii 1.3-2.3 (box: R = 2.5 of analyze-pend)"),
    _separable("damped_pendulum", 1, _box(1, (-2.5, 2.5), (-2.5, 2.5)), _s.spring_T, _s.ideal_pendulum_V,
               _s.damped_pendulum_field, conservative=False, initial=_s.ring_sampler(1.3, 2.3),
               traj_t_span=(0.0, 20.0), traj_points=200,
               source="stand-in for Greydanus et al.'s real pendulum (Schmidt & Lipson 2009 data, not fetchable "
                      f"here): their ideal pendulum plus friction dp/dt -= {_s.DAMPING} p"),
    _separable("two_body", 4, {"low": (-1.5,) * 4 + (-0.8,) * 4, "high": (1.5,) * 4 + (0.8,) * 4}, _s.kinetic_T,
               _s.two_body_V, _s.two_body_field, initial=_s.two_body_initial, traj_t_span=(0.0, 20.0),
               traj_points=50, source=_GREY + " experiment-2body/data.py (unit masses, G = 1)"),
    HamiltonianSystem(name="tao_nonseparable", n=1, separable=False, hamiltonian=_s.tao_H, field_qp=_s.tao_field,
                      **_box(1, (-2.0, 2.0), (-2.0, 2.0)),
                      source="Tao, Phys. Rev. E 94, 043303 (2016), H = (q^2 + 1)(p^2 + 1) / 2"),
]

SYSTEMS: Mapping[str, HamiltonianSystem] = MappingProxyType({s.name: s for s in _SYSTEM_LIST})
"""All systems by name (see the module docstring's table); read-only."""

_ALIASES = {"trigo": "trigonometric", "logarithm": "logarithmic", "anisotropicoscillator2D": "anisotropic_oscillator",
            "henonheiles": "henon_heiles", "todalattice": "toda3", "coupledoscillator": "spring_chain3",
            "coupledoscillator10": "spring_chain10", "spring": "mass_spring", "pend": "ideal_pendulum",
            "2body": "two_body"}
"""The names used in the authors' code (SeparableNNs ``all_systems.py``, hamiltonian-nn experiment folders)."""


def hamiltonian_system(name: str) -> HamiltonianSystem:
    """The registered system called ``name`` (also accepts the authors' code names, e.g. ``"henonheiles"``).

    Raises:
        InputError: unknown name; the message lists the known ones.
    """
    if isinstance(name, str):
        key = _ALIASES.get(name, name)
        if key in SYSTEMS:
            return SYSTEMS[key]
    raise InputError(f"name must be one of {sorted(SYSTEMS)} (or an alias: {sorted(_ALIASES)}), got {name!r}.")
