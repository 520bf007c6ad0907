"""Autoencoder, PCA baseline and HiTS flow maps (issue 16)."""

import io

import pytest
import torch

from pysciml import ODEProblem, Rodas5P, solve
from pysciml.errors import InputError
from pysciml.models import PCA, Autoencoder, ConvAutoencoder, HiTS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

F64 = torch.float64
DT = 0.1
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)  # damped rotation, x' = A x




def linear_data(n_traj: int, T: int, seed: int) -> torch.Tensor:
    """Exact trajectories of x' = A x at spacing DT (matrix exponential), (n_traj, T, 2)."""
    x = torch.randn(n_traj, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)
    P = torch.linalg.matrix_exp(A * DT)
    xs = [x]
    for _ in range(T - 1):
        xs.append(xs[-1] @ P.T)
    return torch.stack(xs, 1)


def set_linear(h: HiTS, m: int, P: torch.Tensor) -> None:
    """Make level m of a linear HiTS (hidden=()) the map x -> P x."""
    with torch.no_grad():
        h.maps[str(m)][0].weight.copy_(P - torch.eye(P.shape[0], dtype=F64))
        h.maps[str(m)][0].bias.zero_()


@pytest.mark.parametrize("m, tol", [(0, 1e-6), (1, 1e-3)])
def test_flow_map_recovers_exact_step_map(m, tol):
    torch.manual_seed(0)
    h = HiTS(2, levels=[m], hidden=())
    hist = h.fit_level(m, linear_data(8, 40, 0), n_forward=5, epochs=1000, lr=0.02)
    with torch.no_grad():  # the learned map x -> x + s_m (W x + b) as a matrix and a shift
        shift = h.step(torch.zeros(1, 2, dtype=F64), m)[0]
        P = (h.step(torch.eye(2, dtype=F64), m) - shift).T
    err = (P - torch.linalg.matrix_exp(A * DT * 2**m)).abs().max().item()
    # measured: 6.4e-9 (m=0) and 5.9e-5 (m=1); the loss fell from ~60 to <1e-7
    assert err < tol
    assert hist[-1] < 1e-6 * hist[0]
    assert shift.abs().max().item() < tol


def test_fit_level_mlp_reduces_loss():
    h = HiTS(2, levels=[0, 1], hidden=(16,), activation=torch.nn.Tanh)
    hist = h.fit_level(1, linear_data(4, 30, 0), n_forward=3, epochs=150, lr=1e-2, batch_size=32, seed=1)
    assert len(hist) == 150 and hist[-1] < 0.05 * hist[0]


def test_mlp_hierarchy_end_to_end_beats_persistence():
    torch.manual_seed(0)
    h = HiTS(2, levels=range(3), hidden=(32,), activation=torch.nn.Tanh)
    train, val = linear_data(32, 40, 0), linear_data(8, 33, 5)
    x = 0.7 * torch.randn(200, 2, dtype=F64)
    for m in range(3):
        h.fit_level(m, train, n_forward=3, epochs=400, lr=1e-2, seed=m)
        with torch.no_grad():
            err = (h.step(x, m) - x @ torch.linalg.matrix_exp(A * DT * 2**m).T).abs().max().item()
        assert err < 0.1  # measured 0.011, 0.050, 0.033 for m = 0, 1, 2 (seed 0)
    lo, hi = h.select_levels(val)
    with torch.no_grad():
        mse = ((h.forecast(val[:, 0], 32, range(lo, hi + 1)) - val) ** 2).mean().item()
    persistence = ((val[:, :1] - val) ** 2).mean().item()
    assert mse < 1e-2 * persistence  # measured 2.4e-4 vs 1.35


def test_forecast_finest_only_equals_repeated_stepping():
    h = HiTS(3, levels=range(3), hidden=(8,))
    x0 = torch.randn(5, 3, dtype=F64)
    with torch.no_grad():
        pred = h.forecast(x0, 13, levels=[0])
        ref = [x0]
        for _ in range(13):
            ref.append(h.step(ref[-1], 0))
    assert pred.shape == (5, 14, 3)
    torch.testing.assert_close(h.forecast(x0, 0), x0[:, None], rtol=0, atol=0)
    torch.testing.assert_close(pred, torch.stack(ref, 1), rtol=0, atol=1e-14)


def test_forecast_two_levels_is_anchor_then_fill_in():
    h = HiTS(2, levels=[0, 2], hidden=(8,))
    x0 = torch.randn(3, 2, dtype=F64)
    with torch.no_grad():
        pred = h.forecast(x0, 10)  # anchors every 4 steps at 0, 4, 8, 12; cut at 10
        anchors = [x0]
        for _ in range(3):
            anchors.append(h.step(anchors[-1], 2))
        ref = []
        for a in anchors[:3]:
            ref += [a, h.step(a, 0), h.step(h.step(a, 0), 0), h.step(h.step(h.step(a, 0), 0), 0)]
        ref = torch.stack(ref[:11], 1)
    assert pred.shape == (3, 11, 2)
    torch.testing.assert_close(pred, ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(pred[:, 4], anchors[1], rtol=0, atol=0)  # anchors untouched by the fill-in


def test_forecast_interpolates_below_finest_level():
    h = HiTS(2, levels=[1], hidden=(8,))
    x0 = torch.randn(2, 2, dtype=F64)
    with torch.no_grad():
        pred = h.forecast(x0, 4)
        x2 = h.step(x0, 1)
    torch.testing.assert_close(pred[:, 1], 0.5 * (x0 + x2), rtol=0, atol=1e-15)
    torch.testing.assert_close(pred[:, 2], x2, rtol=0, atol=0)


def test_select_levels_picks_the_good_band():
    # exact maps with deliberate defects: level 0 grows 10 % per step, level 1 has a 0.01 rad phase error,
    # level 2 is exact, level 3 shrinks 20 % per step; with 8 * 0.1 = 0.8 s per level-3 step and frequency 2,
    # linear interpolation between level-2 points (0.4 s) costs more than one level-1 step.
    h = HiTS(2, levels=range(4), hidden=())
    c, s = torch.cos(torch.tensor(0.01, dtype=F64)), torch.sin(torch.tensor(0.01, dtype=F64))
    rot = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    defects = {0: 1.1 * torch.eye(2, dtype=F64), 1: rot, 2: torch.eye(2, dtype=F64), 3: 0.8 * torch.eye(2, dtype=F64)}
    for m in range(4):
        set_linear(h, m, defects[m] @ torch.linalg.matrix_exp(A * DT * 2**m))
    val = linear_data(4, 65, 1)
    errors = h.band_errors(val)
    assert len(errors) == 10  # contiguous bands of 4 levels
    assert h.select_levels(val) == (1, 2)
    second = sorted(errors.values())[1]
    assert errors[(1, 2)] < 0.2 * second  # measured 6.3e-5 vs 8.4e-4 for (2, 2)
    assert errors[(0, 0)] > 1e3  # the growing map blows up alone


def test_hybrid_fine_step_is_a_pysciml_solve():
    # exact maps for levels 1 and 2; the base step is a Rodas5P solve of x' = A x over one DT, batched over rows
    h = HiTS(2, levels=[1, 2], hidden=())
    for m in (1, 2):
        set_linear(h, m, torch.linalg.matrix_exp(A * DT * 2**m))
    calls = []

    def fine_step(x):
        calls.append(x.shape[0])
        prob = ODEProblem(lambda t, u: u @ A.T, x, (0.0, DT))
        return solve(prob, Rodas5P(), rtol=1e-10, atol=1e-12, saveat=[DT]).u[-1]

    val = linear_data(3, 13, 4)
    with torch.no_grad():
        pred = h.forecast(val[:, 0], 12, fine_step=fine_step)
    assert calls == [3 * 6]  # one batched solve per fill-in step: 3 trajectories x 6 level-1 points
    err = (pred - val).abs().max().item()
    assert err < 1e-10  # measured 6.1e-15
    with torch.no_grad():  # without the solver the odd steps are linear interpolation: far worse
        assert (h.forecast(val[:, 0], 12) - val).abs().max().item() > 1e-3
    with pytest.raises(InputError, match="fine_step replaces level 0"):
        HiTS(2, levels=[0, 1], hidden=()).forecast(val[:, 0], 4, fine_step=fine_step)


def low_rank_data(n: int = 200, n_in: int = 12, rank: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(n, rank, generator=g, dtype=F64)
    basis = torch.randn(rank, n_in, generator=g, dtype=F64)
    return z @ basis + 0.5  # centred rank 3, nonzero mean


def test_pca_error_decreases_and_is_exact_at_rank():
    x = low_rank_data()
    errs = [((PCA(k).fit(x)(x) - x) ** 2).mean().item() for k in range(1, 5)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] < 0.7 * errs[0]
    assert errs[2] < 1e-26 and errs[3] < 1e-26  # exact to round-off when latent >= rank
    assert PCA(2).fit(x).encode(x).shape == (200, 2)


def test_autoencoder_error_decreases_with_latent():
    x = low_rank_data()
    x = (x - x.mean(0)) / x.std()
    errs = []
    for k in (1, 3):
        torch.manual_seed(0)
        ae = Autoencoder(12, k, hidden=(32,), activation=torch.nn.Tanh)
        opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
        for _ in range(300):
            loss = ((ae(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errs.append(loss.item())
    assert ae.encode(x).shape == (200, 3) and ae.decode(ae.encode(x)).shape == (200, 12)
    assert errs[1] < 0.3 * errs[0]


def test_conv_autoencoder_on_travelling_waves_beats_pca():
    # fields a sin(x - s) + 0.3 sin(2 (x - s)) on 32 periodic points: a 2-parameter family (a, s)
    g = torch.Generator().manual_seed(3)
    grid = torch.linspace(0, 2 * torch.pi, 33, dtype=F64)[:-1]
    s = 2 * torch.pi * torch.rand(200, 1, generator=g, dtype=F64)
    a = 1 + 0.5 * torch.rand(200, 1, generator=g, dtype=F64)
    x = a * torch.sin(grid - s) + 0.3 * torch.sin(2 * (grid - s))
    errs = {}
    for k in (1, 2):
        torch.manual_seed(0)
        ae = ConvAutoencoder(32, k, channels=(4, 8), hidden=(32,), activation=torch.nn.Tanh)
        opt = torch.optim.Adam(ae.parameters(), lr=5e-3)
        for _ in range(300):
            loss = ((ae(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errs[k] = loss.item()
    assert ae.encode(x[:2]).shape == (2, 2) and ae(x.reshape(4, 50, 32)).shape == (4, 50, 32)
    pca2 = ((PCA(2).fit(x)(x) - x) ** 2).mean().item()  # keeps the first harmonic only: 0.3**2 / 2
    assert errs[2] < 0.3 * errs[1]  # measured 8.8e-4 vs 1.1e-2
    assert errs[2] < 0.1 * pca2  # measured 8.8e-4 vs 4.5e-2
    with pytest.raises(InputError, match="divisible"):
        ConvAutoencoder(30, 2, channels=(4, 8))
    with pytest.raises(InputError, match="odd"):
        ConvAutoencoder(32, 2, kernel_size=4)


def _roundtrip(src: torch.nn.Module, dst: torch.nn.Module) -> torch.nn.Module:
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst.load_state_dict(torch.load(buf))
    return dst


def test_state_dict_round_trip():
    x = torch.randn(6, 4, dtype=F64)
    h = HiTS(4, levels=[0, 1, 3], hidden=(8,))
    h.fit_level(1, torch.randn(2, 12, 4, dtype=F64), n_forward=2, epochs=2)  # sets the increment scale s_1
    assert h.scale_1.item() != 1.0
    h2 = _roundtrip(h, HiTS(4, levels=[0, 1, 3], hidden=(8,)))
    assert h2.scale_1.item() == h.scale_1.item()
    with torch.no_grad():
        torch.testing.assert_close(h2.forecast(x, 9), h.forecast(x, 9), rtol=0, atol=0)
    ae = Autoencoder(4, 2, hidden=(5,))
    ae2 = _roundtrip(ae, Autoencoder(4, 2, hidden=(5,)))
    torch.testing.assert_close(ae2(x), ae(x), rtol=0, atol=0)
    cae = ConvAutoencoder(8, 2, channels=(3,), hidden=(4,))
    cae2 = _roundtrip(cae, ConvAutoencoder(8, 2, channels=(3,), hidden=(4,)))
    xc = torch.randn(5, 8, dtype=F64)
    torch.testing.assert_close(cae2(xc), cae(xc), rtol=0, atol=0)
    p = PCA(2).fit(x)
    p2 = _roundtrip(p, PCA(2, n_in=4))
    torch.testing.assert_close(p2(x), p(x), rtol=0, atol=0)


def test_bad_inputs():
    h = HiTS(2, levels=[0, 1], hidden=(4,))
    x0 = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(InputError, match="levels"):
        HiTS(2, levels=[])
    with pytest.raises(InputError, match="levels"):
        HiTS(2, levels=[-1, 0])
    with pytest.raises(InputError, match="dim"):
        HiTS(0)
    with pytest.raises(InputError, match="level 2"):
        h.forecast(x0, 4, levels=[2])
    with pytest.raises(InputError, match="x0"):
        h.forecast(torch.zeros(3, 5, dtype=F64), 4)
    with pytest.raises(InputError, match="n_steps"):
        h.forecast(x0, -1)
    with pytest.raises(InputError, match="too short"):
        h.fit_level(1, torch.zeros(2, 10, 2, dtype=F64), n_forward=5)
    with pytest.raises(InputError, match="trajectories"):
        h.fit_level(0, torch.zeros(10, 2, dtype=F64))
    with pytest.raises(InputError, match="latent"):
        PCA(5).fit(torch.zeros(10, 3, dtype=F64))
    with pytest.raises(InputError, match="not fitted"):
        PCA(2).encode(x0)
    with pytest.raises(InputError, match="hidden"):
        Autoencoder(4, 2, hidden=(0,))
    with pytest.raises(InputError, match=r"\(\.\.\., 4\)"):
        Autoencoder(4, 2).encode(x0)
