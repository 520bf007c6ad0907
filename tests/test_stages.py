"""The stage-sum helper every stepper uses (``pysciml.engine.stages.StageSum``), against a plain sum.

Random coefficients with zeros (whole zero rows, zeros inside rows, trailing zeros), one and several rows,
every path (scaled adds, one stacked matrix product, the large-state fallback), batched shapes, float32,
and gradients through it (float64 ``gradcheck`` and autograd of the plain sum).
"""

from __future__ import annotations

import pytest
import torch

from pysciml.engine.stages import SCALED_ADD_TERMS, STACK_LIMIT, StageSum

CPU = torch.device("cpu")


def plain(row: tuple[float, ...], vectors: list[torch.Tensor]) -> torch.Tensor | None:
    """The reference: a Python sum of ``c * v`` over the nonzero coefficients (``None`` if there are none)."""
    terms = [c * v for c, v in zip(row, vectors, strict=False) if c != 0.0]
    return sum(terms[1:], terms[0]) if terms else None


def random_rows(gen: torch.Generator, r: int, m: int, p_zero: float) -> list[tuple[float, ...]]:
    rows = []
    for _ in range(r):
        values = torch.randn(m, generator=gen, dtype=torch.float64)
        values[torch.rand(m, generator=gen) < p_zero] = 0.0
        rows.append(tuple(values.tolist()))
    return rows


def check(rows: list[tuple[float, ...]], vectors: list[torch.Tensor], tol: float = 1e-13) -> None:
    got = StageSum(*rows, dtype=vectors[0].dtype, device=CPU)(vectors)
    assert isinstance(got, tuple) and len(got) == len(rows)
    for row, out in zip(rows, got, strict=True):
        want = plain(row, vectors)
        if want is None:
            assert out is None, f"a zero row {row} must give None"
        else:
            assert out is not None and out.shape == vectors[0].shape and out.dtype == vectors[0].dtype
            torch.testing.assert_close(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("r", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 3), (5, 2), (7, 4)])
def test_random_rows_match_the_plain_sum(seed, r, shape):
    gen = torch.Generator().manual_seed(seed)
    m = 1 + seed
    rows = random_rows(gen, r, m, p_zero=0.35)
    vectors = [torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(m + 2)]  # extras unused
    check(rows, vectors)


@pytest.mark.parametrize("rows", [
    [(0.0, 0.0, 0.0)],                      # all zero: None
    [()],                                   # empty row: None
    [(0.0, 2.5)],                           # one term after a zero
    [(1.0, 0.0, -3.0, 0.0, 0.0)],           # trailing zeros
    [(0.5, -1.25, 3.0, 0.0, 2.0)],          # four terms: the stacked product
    [(1.0, 2.0, 3.0, 4.0, 5.0, 6.0)],
    [(0.0, 0.0), (1.0, -1.0)],              # a zero row among several
    [(2.0,), (-10.3,)],                     # Rosenbrock's first stage: one vector, two rows
    [(1.0, 2.0, 3.0), ()],                  # rows of different lengths
])
@pytest.mark.parametrize("n", [3, STACK_LIMIT // 2 + 1])  # the second exceeds STACK_LIMIT at B = 2
def test_edge_rows_and_large_states(rows, n):
    gen = torch.Generator().manual_seed(1)
    vectors = [torch.randn(2, n, generator=gen, dtype=torch.float64) for _ in range(6)]
    check(rows, vectors)


def test_paths_are_chosen_as_documented():
    kw = {"dtype": torch.float64, "device": CPU}
    assert StageSum((1.0,) * SCALED_ADD_TERMS, **kw).matrix is None
    assert StageSum((1.0,) * (SCALED_ADD_TERMS + 1), **kw).matrix is not None
    assert StageSum((1.0,), (2.0,), **kw).matrix is not None  # several rows share one stack
    assert StageSum((0.0, 0.0), **kw).matrix is None
    assert StageSum((1.0, 0.0, 0.0), (0.0, 2.0, 0.0), **kw).matrix.shape == (2, 2)  # only the vectors used
    with pytest.raises(ValueError):
        StageSum(**kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    gen = torch.Generator().manual_seed(3)
    vectors = [torch.randn(4, 3, generator=gen, dtype=dtype) for _ in range(6)]
    for rows in ([(1.0, 2.0)], [(1.0, 2.0, 3.0, 4.0, 5.0)], [(1.0,), (0.5, 0.5)]):
        for out in StageSum(*rows, dtype=dtype, device=CPU)(vectors):
            assert out is not None and out.dtype == dtype
    check([(0.1, 0.2, 0.3, 0.4, 0.5)], vectors, tol=1e-5 if dtype == torch.float32 else 1e-13)


@pytest.mark.parametrize("rows", [[(0.5, -2.0)], [(0.5, -1.25, 3.0, 0.0, 2.0)], [(1.0, 0.0, 2.0), (0.0, -1.0, 0.5)]])
def test_gradients_flow_through(rows):
    gen = torch.Generator().manual_seed(4)
    vectors = [torch.randn(3, 2, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    stage_sum = StageSum(*rows, dtype=torch.float64, device=CPU)

    def total(*vs: torch.Tensor) -> torch.Tensor:
        outs = stage_sum(list(vs))
        return sum((k + 1) * (o * o).sum() for k, o in enumerate(outs) if o is not None)

    assert torch.autograd.gradcheck(total, tuple(vectors))
    got = torch.autograd.grad(total(*vectors), vectors, allow_unused=True)

    def reference(vs: list[torch.Tensor]) -> torch.Tensor:
        outs = [plain(row, vs) for row in rows]
        return sum((k + 1) * (o * o).sum() for k, o in enumerate(outs) if o is not None)

    want = torch.autograd.grad(reference(vectors), vectors, allow_unused=True)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None or bool((g == 0).all())
        else:
            torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("rows", [[(0.1, 0.2, 0.3, 0.4, 0.5)], [(1.0, 2.0)], [(1.0,), (0.5, 0.5, 0.25)]])
@pytest.mark.parametrize("n", [3, STACK_LIMIT + 1])  # the matrix product and, past STACK_LIMIT, the scaled adds
def test_wide_sums_of_float32_round_once(rows, n):
    """``wide=True``: a float32 state's sums are the float64 sums of its (exact) float64 values rounded once to
    float32, bit for bit, on every path; a float64 state's are unchanged."""
    gen = torch.Generator().manual_seed(5)
    vectors = [torch.randn(1, n, generator=gen, dtype=torch.float32) for _ in range(6)]
    got = StageSum(*rows, dtype=torch.float32, device=CPU, wide=True)(vectors)
    wide = StageSum(*rows, dtype=torch.float64, device=CPU)([v.double() for v in vectors])
    for out, ref in zip(got, wide, strict=True):
        assert out is not None and ref is not None and out.dtype == torch.float32
        torch.testing.assert_close(out, ref.float(), rtol=0, atol=0)
    vectors64 = [v.double() for v in vectors]
    for a, b in zip(StageSum(*rows, dtype=torch.float64, device=CPU, wide=True)(vectors64), wide, strict=True):
        assert a is not None and b is not None and torch.equal(a, b)


@pytest.mark.parametrize("name", ["Rosenbrock23", "Rodas4", "Rodas5", "Rodas5P"])
def test_rosenbrock_float32_step_is_consistent(name):
    """One float32 step on u' = 1 (h = 0.1): the step moves u by h to float32's round-off and the error estimate
    reads (nearly) zero. With the stage sums formed in float32, Rodas5P's C rows rounded to float32 moved the step
    by 2.6e-6 h and its estimate read 6.2e-7 h (Rodas5 9.5e-7 and 7.8e-7, Rodas4 1.8e-7 for the estimate)."""
    import pysciml as ps
    from pysciml.native import make_stepper
    from pysciml.solution import Stats

    prob = ps.ODEProblem(lambda t, y, p: torch.ones_like(y), torch.tensor([1.0, 0.3]), (0.0, 1.0))
    stepper = make_stepper(getattr(ps, name)(), prob, Stats(), torch.tensor(1e-6), 1e-4, False)
    t, u, h = torch.zeros(1), prob.u0[None], 0.1
    stepper.init(t, u)
    res = stepper.step(t, u, torch.full((1,), h))
    eps = torch.finfo(torch.float32).eps
    assert float((res.u_new.double() - u.double() - h).abs().max()) <= 2 * eps * 1.1  # the sum's own rounding
    assert float(res.err.abs().max()) <= 0.5 * eps * h
