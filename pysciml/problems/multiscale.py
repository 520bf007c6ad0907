"""Multiscale PDE-as-ODE problems and seeded trajectory data sets for learned time-steppers (issue 16, HiTS).

* :func:`kuramoto_sivashinsky`: ``u_t = -u u_x - u_xx - u_xxxx`` on a periodic grid, as a
  :class:`~pysciml.SplitODEProblem` (stiff linear part implicit, the advection explicit), finite differences or
  Fourier (spectral) derivatives.
* :func:`fitzhugh_nagumo_lattice`: the FitzHugh-Nagumo reaction-diffusion system on a line with no-flux
  boundaries (activator and inhibitor, ``2 n_nodes`` states), an :class:`~pysciml.ODEProblem` with its
  analytic Jacobian.
* :func:`ks_dataset`, :func:`fhn_dataset`: random smooth initial conditions, integrated with pysciml's own
  solvers through a transient and then sampled every ``dt``, with optional seeded Gaussian noise.
* :func:`save_dataset`, :func:`load_dataset`: ``.npz`` archives with every parameter stored as JSON.

A data set is a ``dict``: ``"u"`` (``(n_traj, n_steps + 1, n_state)`` float tensor, noisy when ``noise > 0``),
``"u_clean"`` (only when ``noise > 0``), ``"t"`` (``(n_steps + 1,)``, time since the end of the transient),
``"x"`` (the grid) and ``"params"`` (a JSON-serialisable dict of every parameter and the solver settings).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..problem import ODEProblem, SplitODEProblem

__all__ = [
    "fhn_dataset", "fitzhugh_nagumo_lattice", "ks_dataset", "ks_operators", "kuramoto_sivashinsky",
    "load_dataset", "save_dataset",
]

Tensor = torch.Tensor
_SCHEMES = ("fd", "spectral")


def _check_int(value: Any, name: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise InputError(f"{name} must be an integer >= {lowest}, got {value!r}")
    return value


def _check_positive(value: Any, name: str, *, zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        raise InputError(f"{name} must be a finite number {'>= 0' if zero else '> 0'}, got {value!r}")
    return v


def _check_noise(noise: Any) -> float:
    v = _check_positive(noise, "noise", zero=True)
    if v > 0.2:
        raise InputError(f"noise must lie in [0, 0.2] (a fraction of the signal's standard deviation), got {noise!r}")
    return v


# ----------------------------------------------------------------------------------------- Kuramoto-Sivashinsky
def _wavenumbers(N: int, L: float) -> Tensor:
    """Angular wavenumbers ``2 pi m / L`` in FFT order, float64, shape ``(N,)``."""
    return 2 * math.pi * torch.fft.fftfreq(N, d=1.0 / N, dtype=torch.float64) / L


def ks_operators(N: int, L: float, scheme: str = "fd", dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Periodic second and fourth derivative matrices on ``x_j = j L / N``, ``j = 0..N-1``.

    ``"fd"``: ``D2 = circ(1, -2, 1) / dx^2`` and ``D4 = D2 @ D2`` (the 5-point ``(1, -4, 6, -4, 1) / dx^4``
    stencil); on a Fourier mode ``exp(i k x)`` they have eigenvalues ``-(4/dx^2) sin^2(k dx / 2)`` and its
    square, i.e. ``-k^2`` and ``k^4`` up to ``O(k^4 dx^2)``. ``"spectral"``: ``F^-1 diag((i k)^m) F`` (exact on
    the resolved modes; for even ``N`` the Nyquist mode gets ``(i k)^m`` with its real ``k``).

    Args:
        N: grid points (``>= 5``). L: period (``> 0``). scheme: ``"fd"`` or ``"spectral"``. dtype: of the result.

    Returns:
        ``(D2, D4)``, each ``(N, N)`` of ``dtype``.
    """
    N = _check_int(N, "N", 5)
    L = _check_positive(L, "L")
    if scheme not in _SCHEMES:
        raise InputError(f"scheme must be one of {_SCHEMES}, got {scheme!r}")
    if scheme == "fd":
        dx = L / N
        eye = torch.eye(N, dtype=torch.float64)
        D2 = (torch.roll(eye, 1, 1) - 2 * eye + torch.roll(eye, -1, 1)) / dx**2
        D4 = D2 @ D2
    else:
        k = _wavenumbers(N, L)
        eye = torch.eye(N, dtype=torch.float64)
        F = torch.fft.fft(eye, dim=0)  # column j: spectrum of e_j

        def deriv(symbol: Tensor) -> Tensor:
            return torch.fft.ifft(symbol[:, None] * F, dim=0).real

        D2, D4 = deriv(-(k**2)), deriv(k**4)
    return D2.to(dtype), D4.to(dtype)


def kuramoto_sivashinsky(
    N: int = 64,
    L: float = 22.0,
    *,
    scheme: str = "fd",
    u0: Tensor | None = None,
    tspan: tuple[float, float] = (0.0, 10.0),
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> SplitODEProblem:
    r"""The Kuramoto-Sivashinsky equation ``u_t = -u u_x - u_xx - u_xxxx`` on ``[0, L)``, periodic.

    Method of lines on ``x_j = j L / N``. The implicit part is the matrix ``A = -D2 - D4`` (shape ``(N, N)``; on
    Fourier modes ``k^2 - k^4``, see :func:`ks_operators`); the explicit part is the advection in conservative
    form, ``-(u^2)_x / 2``, with the central difference ``(w_{j+1} - w_{j-1}) / (2 dx)`` (``"fd"``) or the
    FFT derivative (``"spectral"``, Nyquist mode dropped) of ``w = u^2``. Integrate it with an IMEX method:
    ``solve(prob, KenCarp4(), ...)`` or ``solve(prob, IMEXSSP2(), dt=...)``; ``unsplit=True`` for others.

    Args:
        N: grid points (``>= 5``). L: period (``> 0``; ``L = 22`` is the usual chaotic case).
        scheme: ``"fd"`` or ``"spectral"``.
        u0: initial state ``(N,)`` or a batch ``(B, N)`` (a batched problem); default ``cos(2 pi x / L)
            (1 + sin(2 pi x / L))``.
        tspan: ``(t0, t1)``. dtype, device: of ``u0`` and the matrix.

    Returns:
        A :class:`SplitODEProblem` with ``p = None``.
    """
    D2, D4 = ks_operators(N, L, scheme, torch.float64)
    A = (-D2 - D4).to(dtype=dtype, device=device)
    dx = float(L) / N
    x = torch.arange(N, dtype=torch.float64) * dx
    if u0 is None:
        u0 = torch.cos(2 * math.pi * x / L) * (1 + torch.sin(2 * math.pi * x / L))
    u0 = torch.as_tensor(u0).to(dtype=dtype, device=device)
    if u0.shape[-1] != N or u0.ndim not in (1, 2):
        raise InputError(f"u0 must have shape ({N},) or (B, {N}) for N = {N}, got {tuple(u0.shape)}")
    if scheme == "spectral":
        ik = 1j * _wavenumbers(N, L).to(device)
        if N % 2 == 0:
            ik[N // 2] = 0.0

        def f_explicit(t: Tensor, u: Tensor) -> Tensor:
            w = torch.fft.fft(u * u, dim=-1)
            return -0.5 * torch.fft.ifft(ik.to(w.dtype) * w, dim=-1).real.to(u.dtype)
    else:
        def f_explicit(t: Tensor, u: Tensor) -> Tensor:
            w = u * u
            return -(torch.roll(w, -1, -1) - torch.roll(w, 1, -1)) / (4 * dx)

    return SplitODEProblem(A, f_explicit, u0, tspan, batched=u0.ndim == 2)


def _smooth_random(gen: torch.Generator, n_traj: int, x: Tensor, period: float, modes: int, *, cosine_only: bool
                   ) -> Tensor:
    """``sum_{m=1..modes} (a_m cos(2 pi m x / P) + b_m sin(...)) / m`` with ``a, b ~ N(0, 1)``, each trajectory
    scaled to max ``|u| = 1``; shape ``(n_traj, len(x))``, float64."""
    m = torch.arange(1, modes + 1, dtype=torch.float64)
    a = torch.randn(n_traj, modes, generator=gen, dtype=torch.float64) / m
    b = torch.zeros_like(a) if cosine_only else torch.randn(n_traj, modes, generator=gen, dtype=torch.float64) / m
    phase = 2 * math.pi * m[:, None] * x[None, :] / period
    u = a @ torch.cos(phase) + b @ torch.sin(phase)
    return u / u.abs().amax(dim=-1, keepdim=True)


def _sample(prob: ODEProblem, alg: Any, transient: float, dt: float, n_steps: int, rtol: float, atol: float,
            step: float | None = None) -> tuple[Tensor, Tensor]:
    """Integrate the batched ``prob`` from 0 through ``transient`` and save every ``dt`` after it (adaptive, or
    fixed steps of ``step``): returns ``(t, u)``, ``t`` ``(n_steps + 1,)`` from 0, ``u`` ``(n_traj, n_steps + 1,
    n)``."""
    from ..solution import raise_if_failed
    from ..solve import solve

    rel = torch.arange(n_steps + 1, dtype=torch.float64) * dt
    save = rel + transient
    prob = prob.remake(tspan=(0.0, float(save[-1])))
    fixed = {} if step is None else {"dt": step, "adaptive": False}
    sol = raise_if_failed(solve(prob, alg, rtol=rtol, atol=atol, saveat=save.tolist(), **fixed), "data generation")
    u = sol.u
    if u.shape[0] != n_steps + 1:  # (n_save, B, n) -> keep the save times only
        raise RuntimeError(f"expected {n_steps + 1} saved states, got {tuple(u.shape)}")
    return rel, u.transpose(0, 1).contiguous()


def _check_sampling(n_traj: int, n_steps: int, modes: int, dt: float, transient: float, noise: float, seed: int
                    ) -> tuple[int, int, int, float, float, float, int]:
    """The sampling arguments shared by :func:`ks_dataset` and :func:`fhn_dataset`, checked and normalised."""
    return (_check_int(n_traj, "n_traj", 1), _check_int(n_steps, "n_steps", 1), _check_int(modes, "modes", 1),
            _check_positive(dt, "dt"), _check_positive(transient, "transient", zero=True), _check_noise(noise),
            _check_int(seed, "seed", 0))


def _dataset(u: Tensor, t: Tensor, x: Tensor, params: dict[str, Any], noise: float, seed: int) -> dict[str, Any]:
    """The data set dict; with ``noise > 0``, ``"u"`` gets seeded Gaussian noise of ``noise`` times the clean
    data's standard deviation and the clean data is kept as ``"u_clean"``."""
    data: dict[str, Any] = {"u": u, "t": t, "x": x, "params": params}
    if noise == 0:
        return data
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    sigma = float(u.std())
    data["u_clean"] = u
    data["u"] = u + noise * sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
    params["noise_sigma"] = noise * sigma
    return data


def ks_dataset(
    n_traj: int,
    *,
    N: int = 64,
    L: float = 22.0,
    dt: float = 0.01,
    n_steps: int = 1000,
    transient: float = 0.0,
    seed: int = 0,
    noise: float = 0.0,
    scheme: str = "fd",
    modes: int = 4,
    alg: Any = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    step: float | None = None,
) -> dict[str, Any]:
    """Seeded Kuramoto-Sivashinsky trajectories (:func:`kuramoto_sivashinsky`), sampled every ``dt``.

    Initial conditions: ``modes`` random Fourier modes (coefficients ``N(0, 1) / m``), each scaled to max
    ``|u| = 1``. All trajectories are one batched adaptive IMEX solve (``alg``, default ``KenCarp4()``) from 0
    through ``transient`` and on to ``transient + n_steps dt``, values interpolated at the save times.

    Args:
        n_traj: trajectories (``>= 1``). N, L, scheme: the grid (see :func:`kuramoto_sivashinsky`).
        dt: sample spacing (``> 0``). n_steps: samples after the first (``>= 1``). transient: time dropped
            (``>= 0``). seed: for the initial conditions and the noise. noise: in ``[0, 0.2]``, additive
            Gaussian noise of ``noise`` times the clean data's standard deviation. modes: random modes (``>= 1``).
        alg: an IMEX algorithm (``KenCarp4()`` default). rtol, atol: solver tolerances (and the Newton
            tolerance of implicit stages). step: ``None`` (adaptive) or a fixed solver step (``> 0``), needed for
            methods without an error estimate such as ``IMEXSSP2()``; values at the save times are interpolated.

    Returns:
        ``{"u": (n_traj, n_steps + 1, N), "t": (n_steps + 1,), "x": (N,), "params": dict}`` (float64 tensors),
        plus ``"u_clean"`` when ``noise > 0``.
    """
    from ..algorithms import KenCarp4

    n_traj, n_steps, modes, dt, transient, noise, seed = _check_sampling(n_traj, n_steps, modes, dt, transient,
                                                                         noise, seed)
    step = None if step is None else _check_positive(step, "step")
    alg = KenCarp4() if alg is None else alg
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(N, dtype=torch.float64) * (float(L) / N)
    u0 = _smooth_random(gen, n_traj, x, float(L), modes, cosine_only=False)
    prob = kuramoto_sivashinsky(N, L, scheme=scheme, u0=u0)
    t, u = _sample(prob, alg, transient, dt, n_steps, rtol, atol, step)
    params = dict(system="kuramoto_sivashinsky", equation="u_t = -u u_x - u_xx - u_xxxx, periodic", N=N,
                  L=float(L), scheme=scheme, dt=dt, n_steps=n_steps, transient=transient, n_traj=n_traj,
                  seed=seed, noise=noise, modes=modes, alg=repr(alg), rtol=rtol, atol=atol, step=step)
    return _dataset(u, t, x, params, noise, seed)


# ---------------------------------------------------------------------------------------------- FitzHugh-Nagumo
def _neumann_laplacian(n: int, h: float) -> Tensor:
    """``(n, n)`` second difference with ghost-point no-flux ends (``u_{-1} = u_1``, ``u_n = u_{n-2}``)."""
    T = -2.0 * torch.eye(n, dtype=torch.float64)
    off = torch.ones(n - 1, dtype=torch.float64)
    T = T + torch.diag(off, 1) + torch.diag(off, -1)
    T[0, 1] = T[-1, -2] = 2.0
    return T / h**2


def fitzhugh_nagumo_lattice(
    n_nodes: int = 101,
    length: float = 20.0,
    D_u: float = 1.0,
    D_v: float = 4.0,
    a0: float = -0.03,
    a1: float = 2.0,
    eps: float = 0.006,
    *,
    u0: Tensor | None = None,
    tspan: tuple[float, float] = (0.0, 100.0),
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""FitzHugh-Nagumo activator-inhibitor system with diffusion on ``[0, length]``, no-flux boundaries.

    .. math::
        u_t &= D_u u_{xx} + u - u^3 - v, \\
        v_t &= D_v v_{xx} + \varepsilon (u - a_1 v - a_0),

    on ``n_nodes`` nodes ``x_i = i h``, ``h = length / (n_nodes - 1)`` (boundaries included), second differences
    with ghost-point Neumann ends. **Source of the form**: this is the FHN PDE of the Kevrekidis group's
    coarse-graining papers (e.g. Lee, Kooshkbaghi, Spiliotis, Siettos & Kevrekidis, *Chaos* 30, 013141, 2020),
    whose parameters (``D_u = 1, D_v = 4, a0 = -0.03, a1 = 2``, ``eps`` near ``0.006``, 101 nodes on ``[0, 20]``)
    the multiscale HiTS/L-HiTS data (Hamid et al., arXiv:2407.00011) use; the exact equations of Hamid et al.
    could not be checked offline, so this standard form is a stated choice.

    **State**: ``[u_0..u_{n-1}, v_0..v_{n-1}]`` (blocked), ``2 n_nodes`` values. The analytic Jacobian is
    given (dense ``(2n, 2n)``; batched ``(B, 2n, 2n)``). The stiffness is ``~ 4 D_v / h^2`` (400 by default)
    against a slow time scale ``~ 1 / eps``: use Rodas5P / KenCarp4 / Kvaerno5, adaptively.

    Args:
        n_nodes: nodes (``>= 3``). length: domain length (``> 0``). D_u, D_v: diffusivities (``>= 0``).
        a0, a1, eps: reaction parameters (``eps > 0``).
        u0: ``(2 n,)`` or a batch ``(B, 2 n)``; default ``u = tanh(x - length/2)``, ``v = 0``.
        tspan: ``(t0, t1)``. dtype, device: of the state.

    Returns:
        The :class:`ODEProblem` (``p = None``).
    """
    n = _check_int(n_nodes, "n_nodes", 3)
    length = _check_positive(length, "length")
    D_u, D_v = _check_positive(D_u, "D_u", zero=True), _check_positive(D_v, "D_v", zero=True)
    eps = _check_positive(eps, "eps")
    a0, a1 = float(a0), float(a1)
    h = length / (n - 1)
    if u0 is None:
        x = torch.arange(n, dtype=torch.float64) * h
        u0 = torch.cat((torch.tanh(x - length / 2), torch.zeros(n, dtype=torch.float64)))
    u0 = torch.as_tensor(u0).to(dtype=dtype, device=device)
    if u0.shape[-1] != 2 * n or u0.ndim not in (1, 2):
        raise InputError(f"u0 must have shape ({2 * n},) or (B, {2 * n}) for n_nodes = {n}, got {tuple(u0.shape)}")
    Lap = _neumann_laplacian(n, h)
    Lin = torch.block_diag(D_u * Lap, D_v * Lap).to(dtype=dtype, device=device)
    lap = Lap.to(dtype=dtype, device=device)

    def f(t: Tensor, y: Tensor) -> Tensor:
        u, v = y[..., :n], y[..., n:]
        lap_t = lap.to(y.dtype)
        du = D_u * (u @ lap_t.T) + u - u**3 - v
        dv = D_v * (v @ lap_t.T) + eps * (u - a1 * v - a0)
        return torch.cat((du, dv), dim=-1)

    def jac(t: Tensor, y: Tensor) -> Tensor:
        u = y[..., :n]
        one = torch.ones_like(u)
        top = torch.cat((torch.diag_embed(1 - 3 * u**2), torch.diag_embed(-one)), dim=-1)
        bottom = torch.cat((torch.diag_embed(eps * one), torch.diag_embed(-eps * a1 * one)), dim=-1)
        return torch.cat((top, bottom), dim=-2) + Lin.to(y.dtype)

    return ODEProblem(f, u0, tspan, jac=jac, batched=u0.ndim == 2)


def fhn_dataset(
    n_traj: int,
    *,
    n_nodes: int = 101,
    length: float = 20.0,
    D_u: float = 1.0,
    D_v: float = 4.0,
    a0: float = -0.03,
    a1: float = 2.0,
    eps: float = 0.006,
    dt: float = 0.1,
    n_steps: int = 1000,
    transient: float = 0.0,
    seed: int = 0,
    noise: float = 0.0,
    modes: int = 3,
    alg: Any = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> dict[str, Any]:
    """Seeded FitzHugh-Nagumo lattice trajectories (:func:`fitzhugh_nagumo_lattice`), sampled every ``dt``.

    Initial conditions: ``u`` a random cosine series (``modes`` modes of period ``2 length``, so no-flux
    compatible; coefficients ``N(0, 1) / m``, scaled to max ``|u| = 1``), ``v = 0.1 x`` another such series.
    One batched adaptive stiff solve (``alg``, default ``Rodas5P()``) through ``transient`` and the samples.

    Args:
        n_traj, dt, n_steps, transient, seed, noise, modes, rtol, atol: as in :func:`ks_dataset`.
        n_nodes, length, D_u, D_v, a0, a1, eps: the system. alg: a stiff algorithm (default ``Rodas5P()``).

    Returns:
        ``{"u": (n_traj, n_steps + 1, 2 n_nodes), "t": (n_steps + 1,), "x": (n_nodes,), "params": dict}``,
        plus ``"u_clean"`` when ``noise > 0``; the state is ``[u, v]`` blocked.
    """
    from ..algorithms import Rodas5P

    n_traj, n_steps, modes, dt, transient, noise, seed = _check_sampling(n_traj, n_steps, modes, dt, transient,
                                                                         noise, seed)
    n = _check_int(n_nodes, "n_nodes", 3)
    alg = Rodas5P() if alg is None else alg
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0.0, float(length), n, dtype=torch.float64)
    uu = _smooth_random(gen, n_traj, x, 2 * float(length), modes, cosine_only=True)
    vv = 0.1 * _smooth_random(gen, n_traj, x, 2 * float(length), modes, cosine_only=True)
    prob = fitzhugh_nagumo_lattice(n, length, D_u, D_v, a0, a1, eps, u0=torch.cat((uu, vv), dim=-1))
    t, u = _sample(prob, alg, transient, dt, n_steps, rtol, atol)
    params = dict(system="fitzhugh_nagumo_lattice",
                  equation="u_t = D_u u_xx + u - u^3 - v; v_t = D_v v_xx + eps (u - a1 v - a0); no-flux ends",
                  n_nodes=n, length=float(length), D_u=float(D_u), D_v=float(D_v), a0=float(a0), a1=float(a1),
                  eps=float(eps), dt=dt, n_steps=n_steps, transient=transient, n_traj=n_traj, seed=seed,
                  noise=noise, modes=modes, alg=repr(alg), rtol=rtol, atol=atol)
    return _dataset(u, t, x, params, noise, seed)


# ------------------------------------------------------------------------------------------------------ storage
def save_dataset(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a data set as ``.npz``: every tensor/array entry as an array, ``data["params"]`` as a JSON string
    under ``"params_json"``.

    Args:
        path: file name (``.npz`` is appended by NumPy when missing). data: as returned by :func:`ks_dataset`.

    Returns:
        The path written.
    """
    if not isinstance(data, dict) or "params" not in data:
        raise InputError("data must be a dict with a 'params' entry, as returned by ks_dataset / fhn_dataset")
    arrays: dict[str, np.ndarray] = {}
    for key, value in data.items():
        if key == "params":
            continue
        if isinstance(value, Tensor):
            arrays[key] = value.detach().cpu().numpy()
        elif isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            raise InputError(f"data[{key!r}] must be a tensor or array, got {type(value).__name__}")
    try:
        params_json = json.dumps(data["params"])
    except TypeError as err:
        raise InputError(f"data['params'] must be JSON-serialisable: {err}") from None
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    np.savez(path, params_json=np.array(params_json), **arrays)
    return path


def load_dataset(path: str | Path) -> dict[str, Any]:
    """Read a data set written by :func:`save_dataset`: arrays as torch tensors, ``"params"`` as a dict."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"path {str(path)!r} does not exist; give the .npz file written by save_dataset")
    with np.load(path, allow_pickle=False) as archive:
        if "params_json" not in archive.files:
            raise InputError(f"path {str(path)!r} has no 'params_json' entry; it was not written by save_dataset")
        out: dict[str, Any] = {k: torch.from_numpy(archive[k].copy()) for k in archive.files if k != "params_json"}
        out["params"] = json.loads(str(archive["params_json"]))
    return out
