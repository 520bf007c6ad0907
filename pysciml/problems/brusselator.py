"""BRUSS: the 1-D Brusselator with diffusion (Hairer, Norsett & Wanner I, Sec. I.1; Hairer & Wanner II, IV.10)."""

from __future__ import annotations

import math

import torch

from ..problem import ODEProblem, SplitODEProblem
from ._reference import Reference, autonomous, register

__all__ = ["brusselator_1d"]

Tensor = torch.Tensor


def _diffusion_matrix(N: int, c: float, dtype: torch.dtype, device: str | torch.device) -> Tensor:
    """``c * blockdiag(T, T)`` with ``T = tridiag(1, -2, 1)`` of size N: the Laplacian without boundary terms."""
    T = -2.0 * torch.eye(N, dtype=dtype, device=device)
    T = T + torch.diag(torch.ones(N - 1, dtype=dtype, device=device), 1)
    T = T + torch.diag(torch.ones(N - 1, dtype=dtype, device=device), -1)
    return c * torch.block_diag(T, T)


def brusselator_1d(
    N: int = 32,
    alpha: float = 1 / 50,
    tspan: tuple[float, float] = (0.0, 10.0),
    *,
    split: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem | SplitODEProblem:
    r"""The Brusselator reaction with 1-D diffusion, method of lines on ``N`` interior points (BRUSS).

    .. math::
        u_i' &= 1 + u_i^2 v_i - 4 u_i + c\,(u_{i-1} - 2 u_i + u_{i+1}) \\
        v_i' &= 3 u_i - u_i^2 v_i + c\,(v_{i-1} - 2 v_i + v_{i+1}), \qquad c = \alpha (N + 1)^2,

    ``i = 1..N``, ``x_i = i / (N + 1)``, boundary values ``u_0 = u_{N+1} = 1``, ``v_0 = v_{N+1} = 3``, initial
    values ``u_i(0) = 1 + sin(2 pi x_i)``, ``v_i(0) = 3``. Sources: Hairer, Norsett & Wanner, *Solving ODEs I*,
    Sec. I.1 (Brusselator with diffusion); Hairer & Wanner, *Solving ODEs II*, Sec. IV.10 (BRUSS).

    **State ordering**: a flat vector of ``2N`` values, ``[u_1, ..., u_N, v_1, ..., v_N]`` (blocked, not
    interleaved), so the diffusion matrix is ``blockdiag(c T, c T)`` with ``T = tridiag(1, -2, 1)``.

    Args:
        N: number of interior grid points (state size ``2N``).
        alpha: diffusion coefficient (default ``1/50``); stiffness grows like ``4 alpha (N + 1)^2``.
        tspan: ``(t0, t1)``, default ``(0, 10)``.
        split: ``False``: an ``ODEProblem`` with the analytic (dense ``(2N, 2N)``) ``jac``. ``True``: a
            ``SplitODEProblem`` whose implicit part is the diffusion matrix (a dense ``(2N, 2N)`` tensor,
            exactly linear) and whose explicit part is the reaction plus the constant boundary terms
            ``c (u_0, 0, ..., 0, u_{N+1})`` and ``c (v_0, 0, ..., 0, v_{N+1})`` (affine, so kept explicit).
        dtype, device: of ``u0`` and the matrix.

    Returns:
        The problem, with ``p = None`` (``f(t, u)``); state ``(2N,)``.

    References (``reference("brusselator_1d", 10.0, N=32)`` and ``N=64``, default ``alpha``): SciPy Radau at
    rtol 1e-13 with the analytic Jacobian, confirmed by Radau at rtol 3e-14 / 1e-12, DOP853 and BDF at rtol
    1e-13 (all within 5e-12); relative accuracy 1e-11.
    """
    if N < 2:
        raise ValueError(f"N must be >= 2, got {N}")
    c = float(alpha) * (N + 1) ** 2
    x = torch.arange(1, N + 1, dtype=torch.float64) / (N + 1)
    u0 = torch.cat((1.0 + torch.sin(2 * math.pi * x), torch.full((N,), 3.0, dtype=torch.float64)))
    u0 = u0.to(dtype=dtype, device=device)
    L = _diffusion_matrix(N, c, dtype, device)
    bnd = torch.zeros(2 * N, dtype=dtype, device=device)
    bnd[0] = bnd[N - 1] = c * 1.0
    bnd[N] = bnd[2 * N - 1] = c * 3.0

    def reaction(u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        a2b = a * a * b
        return torch.cat((1.0 + a2b - 4.0 * a, 3.0 * a - a2b), dim=-1)

    def f_explicit(t: Tensor, u: Tensor) -> Tensor:
        return reaction(u) + bnd.to(u.dtype)

    def f(t: Tensor, u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        one, three = torch.ones_like(a[..., :1]), torch.full_like(b[..., :1], 3.0)
        ap = torch.cat((one, a, one), dim=-1)
        bp = torch.cat((three, b, three), dim=-1)
        lap = torch.cat((ap[..., :-2] - 2 * a + ap[..., 2:], bp[..., :-2] - 2 * b + bp[..., 2:]), dim=-1)
        return reaction(u) + c * lap

    def jac(t: Tensor, u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        ab2, a2 = 2 * a * b, a * a
        top = torch.cat((torch.diag_embed(ab2 - 4.0), torch.diag_embed(a2)), dim=-1)
        bottom = torch.cat((torch.diag_embed(3.0 - ab2), torch.diag_embed(-a2)), dim=-1)
        return torch.cat((top, bottom), dim=-2) + L.to(u.dtype)

    if split:
        return SplitODEProblem(L, f_explicit, u0, tspan)
    return ODEProblem(f, u0, tspan, jac=jac, tgrad=autonomous)


# ----------------------------------------------------------------------------------------------- references
# Computed 2026-11-22 by scripts/compute_references.py (SciPy 1.17.1, float64): solve_ivp(method="Radau",
# rtol=1e-13, atol=1e-16, analytic Jacobian of this module), state order [u_1..u_N, v_1..v_N], alpha = 1/50.
# Checks (max componentwise relative difference):
#   N = 32: Radau rtol 3e-14: 6.1e-15; Radau rtol 1e-12: 1.0e-13; DOP853 rtol 1e-13: 1.3e-12; BDF rtol 1e-13: 4.9e-12
#   N = 64: Radau rtol 3e-14: 5.1e-15; Radau rtol 1e-12: 1.6e-13; DOP853 rtol 1e-13: 1.2e-13; BDF rtol 1e-13: 5.0e-12
_SOURCE = "Hairer, Norsett & Wanner I, I.1; Hairer & Wanner II, IV.10 (BRUSS)"
_METHOD = "SciPy Radau rtol=1e-13, atol=1e-16, analytic Jacobian, float64; 2026-11-22"

register(
    Reference(
        name="brusselator_1d", t=10.0, params={"N": 32, "alpha": 1 / 50},
        values=(
            0.9217199975634098, 0.8463139328060217, 0.7760884584320371, 0.7126245833455335,
            0.6567646173591181, 0.6087103613516099, 0.5681813381090837, 0.5345855075506838,
            0.5071702627614578, 0.4851386575670576, 0.4677288604250043, 0.4542622109894272,
            0.444167998650835, 0.4369929763197953, 0.43240220526991635, 0.4301760751475653,
            0.43020673585166547, 0.43249586336960816, 0.4371546276488371, 0.4444058216461441,
            0.454587201822786, 0.4681540387175615, 0.48567757334944694, 0.5078345020817671,
            0.5353809377040755, 0.5691030203416885, 0.6097364714537457, 0.6578504156924352,
            0.713698431122121, 0.7770528426052908, 0.8470549064182101, 0.9221276459425225,
            3.098815870984639, 3.19389820187757, 3.282182758672286, 3.3615077890739995,
            3.4306678723533777, 3.4893233402152566, 3.537822744353166, 3.5769947503275414,
            3.607950535092082, 3.631919070043207, 3.650122435190823, 3.6636887721865037,
            3.673595993642677, 3.6806382579269528, 3.6854079291500983, 3.688287201033355,
            3.689445183190882, 3.688837780874966, 3.686209093676892, 3.6810943625268964,
            3.6728257929038923, 3.6605439588974447, 3.6432189891220887, 3.619687289671541,
            3.588710906906995, 3.549067168902062, 3.499674892884534, 3.439758678152972,
            3.3690430698867746, 3.287953254224062, 3.1977809591586235, 3.1007604045020494,
        ),
        method=_METHOD, accuracy=1e-11, source=_SOURCE,
        agreement="Radau rtol 3e-14: 6.1e-15; Radau rtol 1e-12: 1.0e-13; "
        "DOP853 rtol 1e-13: 1.3e-12; BDF rtol 1e-13: 4.9e-12",
    ),
    defaults={"N": 32, "alpha": 1 / 50},
)
register(
    Reference(
        name="brusselator_1d", t=10.0, params={"N": 64, "alpha": 1 / 50},
        values=(
            0.9601506359924274, 0.9206907827208345, 0.8819807752871346, 0.8443427048163585,
            0.8080538500670512, 0.7733427349136427, 0.7403877301455183, 0.7093179419850663,
            0.6802160025369891, 0.6531223062020046, 0.6280402186512188, 0.6049418120736826,
            0.5837737391533204, 0.5644629349302148, 0.5469219181757453, 0.5310535427639721,
            0.5167551185535542, 0.503921877279947, 0.49244980105467295, 0.482237860099567,
            0.4731897241139272, 0.46521502041460344, 0.4582302139689847, 0.452159181711392,
            0.44693354781000577, 0.44249283917490617, 0.43878451245150385, 0.4357638957004948,
            0.43339408034598065, 0.4316457920035344, 0.4304972625627481, 0.4299341203764728,
            0.4299493105160261, 0.43054305265896076, 0.43172284012809015, 0.43350347972747727,
            0.4359071681473912, 0.4389635966613553, 0.4427100714481219, 0.4471916319905376,
            0.4524611445121065, 0.4585793412380883, 0.46561476941054947, 0.47364360655032445,
            0.4827492906949516, 0.4930219066997099, 0.5045572628716694, 0.517455587224234,
            0.5318197708493669, 0.5477530890187438, 0.5653563406601114, 0.5847243659925689,
            0.6059419324295309, 0.6290790219527712, 0.654185609548893, 0.6812860907816857,
            0.7103735935528532, 0.7414044880686873, 0.7742934804362843, 0.8089097271128445,
            0.8450744264653278, 0.8825603179725737, 0.921093441221073, 0.9603573750025406,
            3.0502604428559006, 3.1000178272019974, 3.1488018780727254, 3.196187420881311,
            3.241803725594976, 3.285340675748401, 3.3265518041233086, 3.3652544473617607,
            3.4013274287939748, 3.4347067737626236, 3.4653799963044225, 3.4933794794100104,
            3.5187754167207994, 3.5416687060567518, 3.5621840979256265, 3.580463815721971,
            3.596661785985282, 3.6109385510240486, 3.6234568840231893, 3.6343780881718994,
            3.6438589349472177, 3.652049180452111, 3.6590895904658702, 3.6651104025704897,
            3.6702301555949584, 3.6745548212301933, 3.6781771789067417, 3.6811763820936894,
            3.683617671522169, 3.6855521981133044, 3.687016925403816, 3.6880345879298035,
            3.688613688345513, 3.6887485220671197, 3.688419224023333, 3.687591837765973,
            3.686218412854173, 3.6842371421839744, 3.681572556888863, 3.67813580266233,
            3.67382502789085, 3.6685259208187544, 3.6621124399979936, 3.654447789293418,
            3.6453856953501567, 3.6347720511131296, 3.622446992896632, 3.6082474795142523,
            3.592010438653065, 3.5735765362558634, 3.552794607167533, 3.5295267576423157,
            3.503654110654004, 3.4750831121152275, 3.4437522501458386, 3.40963896239724,
            3.372766422679478, 3.333209815341398, 3.2911016347025437, 3.246635500447463,
            3.2000679722793026, 3.1517178907367396, 3.1019628736941476, 3.051232759703205,
        ),
        method=_METHOD, accuracy=1e-11, source=_SOURCE,
        agreement="Radau rtol 3e-14: 5.1e-15; Radau rtol 1e-12: 1.6e-13; "
        "DOP853 rtol 1e-13: 1.2e-13; BDF rtol 1e-13: 5.0e-12",
    ),
)
