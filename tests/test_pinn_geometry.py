"""pysciml.pinn.geometry and sampling: samples inside and on the boundary, counts, outward unit normals, volumes,
seeds, quasi-random samplers, residual-based refinement, and InputError on bad input."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml.errors import InputError
from pysciml.pinn import geometry as G
from pysciml.pinn.sampling import qmc_points, residual_adaptive_refinement

METHODS = ("uniform", "pseudo", "lhs", "sobol", "halton")
R = 0.15
CENTRES = [(0.3, 0.3), (0.3, 0.7), (0.7, 0.3), (0.7, 0.7)]



pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

def square_minus_disks() -> G.Domain:
    dom: G.Domain = G.Box([0.0, 0.0], [1.0, 1.0])
    for c in CENTRES:
        dom = dom - G.Disk(c, R)
    return dom


def hole_distance(x: torch.Tensor) -> torch.Tensor:
    """Distance of each point to the nearest hole circle (exact)."""
    c = torch.tensor(CENTRES, dtype=x.dtype)
    return ((x[:, None, :] - c).norm(dim=-1) - R).abs().min(dim=1).values


def square_distance(x: torch.Tensor) -> torch.Tensor:
    """Distance of points inside the unit square to its boundary."""
    return torch.minimum(x, 1 - x).min(dim=1).values


def check_normals(dom: G.Domain, b: torch.Tensor, eps: float = 1e-6) -> None:
    n = dom.boundary_normal(b)
    assert torch.allclose(n.norm(dim=1), torch.ones(len(b), dtype=b.dtype), atol=1e-14)
    assert not bool(dom.contains(b + eps * n).any())  # a small step along n leaves the domain
    assert bool((dom.signed_distance(b - eps * n) < 0).all())  # and one against it enters


@pytest.mark.parametrize("method", METHODS)
def test_box_samples(method: str) -> None:
    box = G.Box([-1.0, 0.0, 2.0], [1.0, 0.5, 3.0])
    x = box.sample_interior(500, method=method, seed=3)
    assert x.shape == (500, 3) and x.dtype == torch.float64
    assert bool(((x > box.low) & (x < box.high)).all())
    b = box.sample_boundary(400, method=method, seed=3)
    assert b.shape == (400, 3)
    gap = torch.minimum((b - box.low).abs(), (b - box.high).abs()).min(dim=1).values
    assert float(gap.max()) < 1e-12 and bool(box.contains(b).all()) and bool(box.on_boundary(b).all())
    check_normals(box, b)
    # faces in proportion to their areas: the 2x0.5 faces (normal +-x2) hold 1/(1 + 2 + 0.5) of the boundary area
    area = 2 * (0.5 * 1 + 2 * 1 + 2 * 0.5)
    frac = float(box.boundary_normal(b)[:, 2].abs().sum()) / len(b)
    assert abs(frac - 2 * 2 * 0.5 / area) < 0.08


def test_box_normals_and_distance_exact() -> None:
    box = G.Box([0.0, 0.0], [2.0, 1.0])
    pts = torch.tensor([[0.0, 0.5], [2.0, 0.3], [1.0, 0.0], [1.5, 1.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(box.boundary_normal(pts), ref)
    q = torch.tensor([[1.0, 0.5], [3.0, 2.0], [1.0, -0.5]], dtype=torch.float64)
    assert torch.allclose(box.signed_distance(q), torch.tensor([-0.5, math.sqrt(2.0), 0.5], dtype=torch.float64))
    assert box.volume() == 2.0 and G.Interval(-1, 2).volume() == 3.0
    assert G.Interval(0, 1).sample_boundary(50).unique().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("d", [1, 2, 3, 7])
@pytest.mark.parametrize("method", ["uniform", "sobol", "halton", "lhs"])
def test_ball_samples(d: int, method: str) -> None:
    ball = G.Ball([0.5] * d, 2.0)
    x = ball.sample_interior(2000, method=method, seed=1)
    r = (x - 0.5).norm(dim=1)
    assert x.shape == (2000, d) and bool((r < 2.0).all())
    # uniform in volume: (r / R)^d is uniform on [0, 1], mean 1/2 (standard error 1/sqrt(12 * 2000) = 0.0065)
    assert abs(float(((r / 2.0) ** d).mean()) - 0.5) < 0.03
    b = ball.sample_boundary(300, method=method, seed=1)
    assert float(((b - 0.5).norm(dim=1) - 2.0).abs().max()) < 1e-12
    check_normals(ball, b)
    assert torch.allclose(ball.boundary_normal(b), (b - 0.5) / 2.0, atol=1e-14)
    exact = {1: 4.0, 2: math.pi * 4, 3: 4 / 3 * math.pi * 8, 7: 16 * math.pi**3 / 105 * 2**7}[d]
    assert math.isclose(ball.volume(), exact, rel_tol=1e-12)


def test_ball_boundary_directions_are_isotropic() -> None:
    b = G.Ball([0.0, 0.0, 0.0], 1.0).sample_boundary(20000, seed=0)
    assert float(b.mean(0).abs().max()) < 0.03  # each coordinate: mean 0, sd 1/sqrt(3 * 20000)
    assert torch.allclose((b**2).mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)


@pytest.mark.parametrize("method", METHODS)
def test_square_minus_four_disks(method: str) -> None:
    dom = square_minus_disks()
    x = dom.sample_interior(1000, method=method, seed=0)
    assert x.shape == (1000, 2)
    assert bool(dom.contains(x).all()) and bool((hole_distance(x) > 0).all())
    c = torch.tensor(CENTRES, dtype=x.dtype)
    assert bool(((x[:, None] - c).norm(dim=-1) > R).all()) and bool(((x > 0) & (x < 1)).all())
    b = dom.sample_boundary(1000, method=method, seed=0)
    assert b.shape == (1000, 2)
    dist = torch.minimum(hole_distance(b), square_distance(b))
    assert float(dist.max()) < 1e-12
    on_holes = hole_distance(b) < 1e-12
    # both kinds of pieces, in proportion to length: 4 * 2 pi R of holes against 4 of square
    share = 4 * 2 * math.pi * R / (4 + 4 * 2 * math.pi * R)
    assert abs(float(on_holes.double().mean()) - share) < 0.06
    check_normals(dom, b)
    n = dom.boundary_normal(b)
    nearest = c[((b[:, None] - c).norm(dim=-1)).argmin(dim=1)]
    assert torch.allclose(n[on_holes], (nearest[on_holes] - b[on_holes]) / R, atol=1e-12)  # into the hole


def test_volume_of_square_minus_disks() -> None:
    dom = square_minus_disks()
    exact = 1 - 4 * math.pi * R**2
    assert abs(dom.volume() - exact) / exact < 0.01
    assert abs(dom.volume(n=4096, seed=5) - exact) / exact < 0.05
    assert dom.volume(seed=2) == dom.volume(seed=2)


def test_union_and_intersection() -> None:
    a, b = G.Disk([0.0, 0.0], 1.0), G.Disk([1.0, 0.0], 1.0)
    lens = a & b  # exact area 2 pi / 3 - sqrt(3) / 2
    union = a | b
    assert abs(lens.volume() - (2 * math.pi / 3 - math.sqrt(3) / 2)) < 0.02
    assert abs(union.volume() - (2 * math.pi - (2 * math.pi / 3 - math.sqrt(3) / 2))) < 0.03
    for dom in (lens, union):
        x = dom.sample_interior(500, method="sobol", seed=1)
        assert bool(dom.contains(x).all())
        p = dom.sample_boundary(500, seed=1)
        da, db = (p.norm(dim=1) - 1).abs(), ((p - torch.tensor([1.0, 0.0], dtype=p.dtype)).norm(dim=1) - 1).abs()
        assert float(torch.minimum(da, db).max()) < 1e-12
        check_normals(dom, p)
    p = union.sample_boundary(500, seed=1)
    inner = (p.norm(dim=1) < 1 - 1e-9) | ((p - torch.tensor([1.0, 0.0], dtype=p.dtype)).norm(dim=1) < 1 - 1e-9)
    assert not bool(inner.any())  # no point of the arcs inside the other disk survives
    p = lens.sample_boundary(500, seed=1)
    far = torch.maximum(p.norm(dim=1), (p - torch.tensor([1.0, 0.0], dtype=p.dtype)).norm(dim=1))
    assert float(far.max()) < 1 + 1e-12  # the lens boundary: arcs inside the other disk only
    mixed = (G.Box([-1.0, -1.0], [1.0, 1.0]) | G.Disk([1.0, 0.0], 0.5)) - G.Disk([0.0, 0.0], 0.3)
    check_normals(mixed, mixed.sample_boundary(400, method="halton", seed=4))


def test_seeds_reproducible_and_distinct() -> None:
    dom = square_minus_disks()
    for method in METHODS:
        assert torch.equal(dom.sample_interior(64, method=method, seed=7), dom.sample_interior(64, method=method,
                                                                                              seed=7))
        assert torch.equal(dom.sample_boundary(64, method=method, seed=7), dom.sample_boundary(64, method=method,
                                                                                              seed=7))
        assert not torch.equal(dom.sample_interior(64, method=method, seed=7),
                               dom.sample_interior(64, method=method, seed=8))
    x = G.Box([0.0], [1.0]).sample_interior(8, dtype=torch.float32)
    assert x.dtype == torch.float32


def test_qmc_points_in_unit_cube_and_even() -> None:
    for method in METHODS:
        u = qmc_points(1024, 3, method, seed=2)
        assert u.shape == (1024, 3) and bool(((u >= 0) & (u < 1)).all())
        assert torch.equal(u, qmc_points(1024, 3, method, seed=2))
    # quasi-random points integrate x0 * x1 * x2 (exact 1/8) far better than pseudo-random ones
    err = {m: abs(float(qmc_points(1024, 3, m, seed=2).prod(dim=1).mean()) - 0.125) for m in METHODS}
    assert err["sobol"] < 2e-3 and err["halton"] < 2e-3
    # a Latin hypercube puts exactly one point in each of the n slabs of every coordinate
    u = qmc_points(100, 2, "lhs", seed=0)
    assert torch.equal(torch.sort((u * 100).floor(), dim=0).values, torch.arange(100.0).repeat(2, 1).T.double())


def test_residual_adaptive_refinement_adds_worst_points() -> None:
    dom = G.Box([0.0, 0.0], [1.0, 1.0])
    pts = dom.sample_interior(10, seed=0)
    peak = torch.tensor([0.8, 0.2], dtype=torch.float64)

    def residual(x):  # sharply peaked at `peak`
        return torch.exp(-((x - peak) ** 2).sum(1) / 0.01)

    out = residual_adaptive_refinement(residual, dom, pts, n_candidates=2000, n_add=20, seed=1)
    assert out.shape == (30, 2) and torch.equal(out[:10], pts)
    new = out[10:]
    cand = dom.sample_interior(2000, seed=1)
    assert float(residual(new).min()) >= float(torch.topk(residual(cand), 20).values.min())
    assert float((new - peak).norm(dim=1).max()) < 0.15
    two = residual_adaptive_refinement(lambda x: torch.stack([residual(x), 0 * x[:, 0]], 1), dom, pts,
                                       n_candidates=2000, n_add=20, seed=1, batch_size=300)
    assert torch.equal(two, out)
    with pytest.raises(InputError, match="n_add"):
        residual_adaptive_refinement(residual, dom, pts, n_candidates=5, n_add=6)
    with pytest.raises(InputError, match="residual must map"):
        residual_adaptive_refinement(lambda x: x.sum(), dom, pts, n_candidates=5, n_add=2)


def test_bad_inputs_raise_input_error() -> None:
    box = G.Box([0.0, 0.0], [1.0, 1.0])
    cases = [
        (lambda: G.Box([0.0, 1.0], [1.0, 1.0]), "high must exceed low"),
        (lambda: G.Box([0.0], [1.0, 2.0]), "same length"),
        (lambda: G.Box([0.0, float("nan")], [1.0, 2.0]), "finite"),
        (lambda: G.Ball([0.0, 0.0], -1.0), "radius"),
        (lambda: G.Disk([0.0, 0.0, 0.0], 1.0), "2-D"),
        (lambda: box | G.Ball([0.0], 1.0), "dimension"),
        (lambda: box & G.Box([2.0, 2.0], [3.0, 3.0]), "empty"),
        (lambda: box.sample_interior(0), "positive int"),
        (lambda: box.sample_interior(10, method="random"), "method"),
        (lambda: box.sample_boundary(10, seed=-1), "seed"),
        (lambda: box.sample_interior(10, dtype=torch.int64), "dtype"),
        (lambda: box.contains(torch.zeros(3, 3)), "shape"),
        (lambda: box.boundary_normal(torch.tensor([[0.5, 0.5]])), "on the boundary"),
        (lambda: box.on_boundary(torch.zeros(1, 2), tol=-1.0), "tol"),
        (lambda: (box - G.Box([-1.0, -1.0], [2.0, 2.0])).sample_interior(5), "no interior points"),
        (lambda: qmc_points(4, 0, "sobol"), "d must be"),
    ]
    for make, match in cases:
        with pytest.raises(InputError, match=match):
            make()
    assert box.__or__(3) is NotImplemented


def test_package_exports_resolve_lazily() -> None:
    """Every name of pysciml.pinn.__all__ comes from the submodule listed for it (those not written yet skip)."""
    import importlib.util
    import subprocess
    import sys

    import pysciml.pinn as P

    for name, module in P._EXPORTS.items():
        if importlib.util.find_spec(f"pysciml.pinn.{module}") is None:
            continue
        value = getattr(P, name)
        assert value.__module__ == f"pysciml.pinn.{module}", name
    assert "Box" in dir(P)
    with pytest.raises(AttributeError):
        P.no_such_name  # noqa: B018
    code = ("import sys, pysciml, pysciml.pinn; "
            "print(sorted(m for m in sys.modules if m.startswith('pysciml.pinn.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"  # importing the package loads none of its modules
