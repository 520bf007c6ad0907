"""The per-call caches of a solve (f's signature, a tableau's tensors, a number ``atol``): a cached answer is reused
only for the same input, and a changed ``f``, dtype or tolerance is checked again (the error a bad input gets is
still raised after a good call). Also the times ``odeint`` has checked (``CheckedTimes``), which ``check_saveat``
takes as they are only where they suit the problem."""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import pytest
import torch

import pysciml as ps
from pysciml._validate import (
    LISTED_TIMES,
    CheckedTimes,
    check_saveat,
    check_times,
    check_times_ends,
    check_tolerances,
)
from pysciml.engine.explicit_rk import ExplicitRKStepper
from pysciml.engine.rhs import RHS
from pysciml.engine.tableaus.explicit import DP5 as DP5_TABLEAU
from pysciml.errors import InputError
from pysciml.problem import takes_params
from pysciml.solution import Stats


def test_signature_answer_follows_the_function():
    def f(t, u):
        return -u

    def g(t):
        return t

    u0 = torch.ones(2)
    assert ps.ODEProblem(f, u0, (0.0, 1.0)).f_takes_p is False
    assert ps.ODEProblem(f, u0, (0.0, 1.0)).f_takes_p is False  # remembered
    with pytest.raises(InputError, match=r"f must take \(t, u, p\) or \(t, u\)"):
        ps.ODEProblem(g, u0, (0.0, 1.0))  # a new function: checked
    f.__code__ = g.__code__  # the same object, now taking (t): checked again
    with pytest.raises(InputError, match=r"its signature is \(t\)"):
        ps.ODEProblem(f, u0, (0.0, 1.0))

    def h(t, u, p=None):
        return -u

    assert takes_params(h, "f", 2, "(t, u, p) or (t, u)") is True
    h.__defaults__ = None  # (t, u, p) with p required: still three
    assert takes_params(h, "f", 2, "(t, u, p) or (t, u)") is True
    assert takes_params(h, "f", 3, "(t, u, v, p) or (t, u, v)") is False  # another base: its own answer


def test_signature_cache_keeps_no_closure_alive_and_tells_modules_apart():
    def make(scale):
        def f(t, u):
            return -scale * u
        return f

    f = make(2.0)
    ps.ODEProblem(f, torch.ones(1), (0.0, 1.0))
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None

    class Two(torch.nn.Module):
        def forward(self, t, u):
            return -u

    class Three(torch.nn.Module):
        def forward(self, t, u, p):
            return -p * u

    assert ps.ODEProblem(Two(), torch.ones(1), (0.0, 1.0)).f_takes_p is False
    assert ps.ODEProblem(Three(), torch.ones(1), (0.0, 1.0), 1.0).f_takes_p is True
    assert ps.ODEProblem(Two(), torch.ones(1), (0.0, 1.0)).f_takes_p is False
    # the unbound function has one more positional argument (self) than the bound method: its own entry
    assert takes_params(Two.forward, "f", 2, "(t, u, p) or (t, u)") is True


def test_tableau_tensors_shared_per_dtype_and_kept_out_of_inference_mode():
    stats = Stats()
    prob32 = ps.ODEProblem(lambda t, u: -u, torch.ones(3), (0.0, 1.0))
    prob64 = prob32.remake(u0=torch.ones(3, dtype=torch.float64))

    def stepper(prob):
        return ExplicitRKStepper(DP5_TABLEAU, RHS(prob.f, prob.f_takes_p, prob, stats, name="f"))

    a, b, c = stepper(prob32), stepper(prob32), stepper(prob64)
    assert a._c is b._c and a.dense_matrix is b.dense_matrix
    assert a._c.dtype == torch.float32 and c._c.dtype == torch.float64 and c.dense_matrix.dtype == torch.float64
    with torch.inference_mode():  # its tensors cannot be saved for backward outside it: kept apart
        d = stepper(prob32)
    e = stepper(prob32)
    assert d._c.is_inference() and not e._c.is_inference() and e._c is a._c
    # a differentiated solve on the shared tensors: d y(T) / d k of y' = -k y
    k = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    prob = ps.ODEProblem(lambda t, u, p: -p * u, torch.ones(1, dtype=torch.float64), (0.0, 2.0), k)
    y = ps.solve(prob, ps.DP5(), rtol=1e-10, atol=1e-12, saveat=[2.0], sensealg=ps.DiscreteAdjoint()).u[-1, 0]
    (grad,) = torch.autograd.grad(y, k)
    assert math.isclose(float(grad), -2.0 * math.exp(-1.4), rel_tol=1e-7)


def test_number_atol_is_checked_again_for_each_dtype_and_value():
    p32 = ps.ODEProblem(lambda t, u: -u, torch.ones(4), (0.0, 1.0))
    p64 = p32.remake(u0=torch.ones(4, dtype=torch.float64))
    r, a = check_tolerances(1e-6, 1e-9, p32)
    r2, a2 = check_tolerances(1e-6, 1e-9, p32)  # remembered
    assert a.shape == a2.shape == (1, 4) and a2.dtype == torch.float32 and torch.equal(a, a2)
    assert float(a[0, 0]) == float(torch.tensor(1e-9, dtype=torch.float32))
    _, a64 = check_tolerances(1e-6, 1e-9, p64)
    assert a64.dtype == torch.float64 and float(a64[0, 0]) == 1e-9
    for bad in (-1e-9, float("nan"), float("inf")):
        with pytest.raises(InputError, match="atol must be finite and >= 0"):
            check_tolerances(1e-6, bad, p32)
    for _ in range(2):  # underflows in float32: the warning comes at every call
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, tiny = check_tolerances(1e-6, 1e-50, p32)
        assert any("underflows to 0" in str(w.message) for w in caught)
        assert float(tiny[0, 0]) == torch.finfo(torch.float32).tiny
    _, a3 = check_tolerances(1e-6, 1e-9, ps.ODEProblem(lambda t, u: -u, torch.ones(2, 3), (0.0, 1.0), batched=True))
    assert a3.shape == (1, 3)


def test_checked_times_are_taken_only_where_they_suit_the_problem():
    prob = ps.ODEProblem(lambda t, u: -u, torch.ones(2), (0.0, 1.0))
    t, first, last = check_times_ends(torch.linspace(0.0, 1.0, 5), prob.u0)
    checked = CheckedTimes(t.detach(), first, last)
    assert check_saveat(checked, prob) is checked.times  # taken as they are: no copy, no second check
    with pytest.raises(InputError, match="lies outside tspan"):  # another problem's span: checked in full
        check_saveat(checked, prob.remake(tspan=(0.0, 0.5)))
    with pytest.raises(InputError, match="strictly decreasing"):  # the other direction: checked in full
        check_saveat(checked, prob.remake(tspan=(1.0, 0.0)))
    p64 = prob.remake(u0=torch.ones(2, dtype=torch.float64))  # another dtype: converted and checked in full
    s64 = check_saveat(checked, p64)
    assert s64.dtype == torch.float64 and torch.equal(s64, torch.linspace(0.0, 1.0, 5).double())
    close = torch.tensor([0.0, 0.5, 0.5 + 1e-12, 1.0], dtype=torch.float64)  # distinct in float64 only
    t, first, last = check_times_ends(close, close)
    with pytest.raises(InputError, match="strictly increasing"):
        check_saveat(CheckedTimes(t, first, last), prob)  # float32 problem: the rounded times are checked


@pytest.mark.parametrize("n", [5, LISTED_TIMES + 5])  # checked as a list of floats, and as tensors
def test_check_times_refuses_the_same_times_either_way(n):
    like = torch.ones(1)
    t, first, last = check_times_ends(torch.linspace(1.0, 0.0, n), like)
    assert (first, last) == (1.0, 0.0) and t.shape == (n,)
    for value, match in ((float("nan"), "NaN or Inf"), (float("inf"), "NaN or Inf"), (2.0, "strictly increasing")):
        bad = torch.linspace(0.0, 1.0, n)
        bad[n // 2] = value
        with pytest.raises(InputError, match=match):
            check_times(bad, like)
    with pytest.raises(InputError, match="strictly increasing"):  # a repeated time
        check_times(torch.cat([torch.zeros(1), torch.linspace(0.0, 1.0, n - 1)]), like)
