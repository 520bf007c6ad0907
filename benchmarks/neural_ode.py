"""Neural-ODE training, side by side: pysciml vs torchdiffeq (odeint, odeint_adjoint) and torchode.

Spiral (torchdiffeq's ``examples/ode_demo.py`` setup): true dynamics ``dy/dt = (y^3) A`` with
   ``A = [[-0.1, 2], [-2, -0.1]]``, ``y0 = (2, 0)``, 1000 points on [0, 25]; model ``net(y^3)`` with a 2-50-2
   tanh MLP; batches of 20 random starts x 10 time points; Adam (lr 1e-3); dopri5 at torchdiffeq's default
   tolerances (rtol 1e-7, atol 1e-9), float32. Reported: time per iteration (median over the run after 3
   warm-up iterations), f evaluations forward / backward per iteration, final loss.
pysciml also with ``compile=True`` (rows "... compile"; one float32 trajectory, so ``odeint`` runs the whole loop as
one program, "pysciml-perstep compile" the scalar loop's per-step programs instead), and as a batch ("pysciml-batch":
``solve`` of a batched problem, each of the 20 starts its own trajectory with its own steps, DP5, discrete adjoint;
compiled, the whole loop and its backward run as ``torch.while_loop`` programs). Rows not in the default list:
"pysciml-rk4" and "torchdiffeq-rk4", torchdiffeq's fixed grid (``method="rk4"``, ``step_size`` ``GRID_STEP``;
compiled, each grid step one program), chosen by name (``spiral small "pysciml-rk4 compile,..."``). Wall and
process CPU time per
iteration are both reported (the machine may be shared). ``spiral_main`` runs the spiral table alone. diffrax (full
and small sizes, CPU): :mod:`benchmarks.neural_ode_jax`. Sizes: ``full`` 100 iterations, ``small`` 20, ``smoke`` 4.
The stiff surrogate (an MLP-corrected ROBER, Rodas5P vs dopri5 and diffrax Kvaerno5):
:mod:`benchmarks.neural_ode_stiff`.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

import pysciml as ps

from .common import environment, markdown_table, result_name, start_task, write_result
from .neural_ode_stiff import stiff_surrogate

TRUE_A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])


class Counted(torch.nn.Module):
    """Wraps a vector field and counts its calls (forward and backward passes separately)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(t, y)


class SpiralField(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2))
        for m in self.net.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, mean=0, std=0.1)
                torch.nn.init.constant_(m.bias, val=0)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3)


def spiral_data(n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.linspace(0.0, 25.0, n)
    y0 = torch.tensor([[2.0, 0.0]])
    with torch.no_grad():
        true_y = ps.odeint(lambda t, y: (y**3) @ TRUE_A, y0, t, method="dopri5")
    return t, true_y


def get_batch(t, true_y, gen, batch_size=20, batch_time=10):
    s = torch.randperm(len(t) - batch_time, generator=gen)[:batch_size]
    return true_y[s], t[:batch_time], torch.stack([true_y[s + i] for i in range(batch_time)], dim=0)


def spiral_batches(iters: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The ``iters`` training batches every solver sees (the same random starts)."""
    gen = torch.Generator().manual_seed(seed)
    t, true_y = spiral_data()
    return [get_batch(t, true_y, gen) for _ in range(iters)]


def spiral_model(seed: int = 0) -> SpiralField:
    torch.manual_seed(seed)
    return SpiralField()


def train_spiral(solver: str, batches: list, seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """Adam on ``batches`` with ``solver``; time per iteration (median after 3), the first iteration's time (for
    ``compile=True`` solvers: the compile), f calls per iteration and the final loss. Compiled solvers get the
    plain field: a Python call counter inside a compiled program would be a guard that changes at every call
    (a recompile per step), so their NFE columns are ``None``."""
    model = spiral_model(seed).to(device)
    compiled = solver.endswith(" compile")
    field = model if compiled else Counted(model)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    integrate = _spiral_integrator(solver.removesuffix(" compile"), field, compiled)
    times, cpus, fwd, bwd, loss = [], [], [], [], float("nan")
    for by0, bt, by in batches:
        by0, bt, by = by0.to(device), bt.to(device), by.to(device)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        calls0 = 0 if compiled else field.calls
        pred = integrate(by0, bt)
        nf = 0 if compiled else field.calls - calls0
        lossv = (pred - by).abs().mean()
        lossv.backward()
        opt.step()
        loss = float(lossv.detach())  # synchronises the device
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        fwd.append(nf)
        bwd.append(0 if compiled else field.calls - calls0 - nf)
    return {"time": statistics.median(times[3:]), "cpu": statistics.median(cpus[3:]), "first": times[0],
            "nfe_f": None if compiled else statistics.mean(fwd), "nfe_b": None if compiled else statistics.mean(bwd),
            "loss": loss}


def _spiral_integrator(solver: str, field: torch.nn.Module, compile: bool = False):
    if solver == "pysciml":
        return lambda y0, t: ps.odeint(field, y0, t, method="dopri5", compile=compile)
    if solver == "pysciml-perstep":  # the same call on the scalar loop's per-step programs (whole loop off)
        from pysciml.engine import compiled_loop

        def perstep(y0, t):
            compiled_loop.ENABLED = False
            try:
                return ps.odeint(field, y0, t, method="dopri5", compile=compile)
            finally:
                compiled_loop.ENABLED = True

        return perstep
    if solver == "pysciml-batch":  # each of the 20 starts its own trajectory (own steps): the whole compiled loop
        def batch(y0, t):
            prob = ps.ODEProblem(field, y0.reshape(y0.shape[0], -1), (float(t[0]), float(t[-1])), batched=True)
            sol = ps.solve(prob, ps.DP5(), saveat=t, rtol=1e-7, atol=1e-9, sensealg=ps.DiscreteAdjoint(),
                           compile=compile)
            return sol.u.reshape(len(t), *y0.shape)

        return batch
    if solver == "pysciml-adjoint":
        return lambda y0, t: ps.odeint_adjoint(field, y0, t, method="dopri5", compile=compile)
    if solver.endswith("-rk4"):  # torchdiffeq's fixed grid: rk4 with step_size (GRID_STEP), discrete gradients
        import torchdiffeq

        fn = ps.odeint if solver == "pysciml-rk4" else torchdiffeq.odeint
        extra = {"compile": compile} if solver == "pysciml-rk4" else {}
        return lambda y0, t: fn(field, y0, t, method="rk4", options={"step_size": GRID_STEP}, **extra)
    if solver.startswith("torchdiffeq"):
        import torchdiffeq

        fn = torchdiffeq.odeint_adjoint if solver.endswith("adjoint") else torchdiffeq.odeint
        return lambda y0, t: fn(field, y0, t, method="dopri5")
    if solver == "torchode":
        import torchode as to

        term = to.ODETerm(lambda t, y: field(t, y.reshape(-1, 1, 2)).reshape(y.shape), with_args=False)
        step = to.Dopri5(term=term)
        ctrl = to.IntegralController(atol=1e-9, rtol=1e-7, term=term)
        adj = to.AutoDiffAdjoint(step, ctrl)

        def run(y0, t):
            flat = y0.reshape(1, -1)
            sol = adj.solve(to.InitialValueProblem(y0=flat, t_eval=t[None]))
            return sol.ys[0].reshape(len(t), *y0.shape)

        return run
    raise ValueError(solver)


GRID_STEP = 0.025
"""The rk4 rows' grid step (``options={"step_size": ...}``): 9 steps over a batch's 10 save times (0.225 apart)."""

SOLVERS = ["pysciml", "pysciml compile", "pysciml-perstep compile", "pysciml-batch", "pysciml-batch compile",
           "torchdiffeq", "pysciml-adjoint",
           "pysciml-adjoint compile", "torchdiffeq-adjoint", "torchode"]


def spiral(iters: int, device: str, with_jax: bool, solvers: list[str] = SOLVERS) -> tuple[str, dict]:
    batches = spiral_batches(iters)
    res, rows = {}, []
    for s in solvers:
        try:
            res[s] = train_spiral(s, batches, device=device)
        except ImportError as exc:
            rows.append([s, f"skipped: {exc}", "", "", "", "", ""])
            continue
        r = res[s]
        rows.append([s, r["time"] * 1e3, _or_dash(r["nfe_f"]), _or_dash(r["nfe_b"]), r["loss"], r["first"],
                     r["cpu"] * 1e3])
    if with_jax:
        try:
            from .neural_ode_jax import train_spiral_diffrax

            r = res["diffrax"] = train_spiral_diffrax(spiral_model(), batches)
            rows.append([f"diffrax (jit; compile {r['compile']:.1f} s)", r["time"] * 1e3, r["nfe_f"], "n/a",
                         r["loss"], r["compile"], "-"])
        except ImportError as exc:
            rows.append(["diffrax", f"skipped: {exc}", "", "", "", "", ""])
    table = markdown_table(["solver (dopri5)", "time / iter [ms]", "NFE fwd", "NFE bwd", "final loss",
                            "first iteration [s]", "CPU / iter [ms]"], rows)
    return table, res


def _or_dash(v: float | None) -> float | str:
    return "-" if v is None else v


PAIRS = (("torchdiffeq", "pysciml"), ("torchdiffeq-adjoint", "pysciml-adjoint"))


def _grid_speedups(r: dict) -> list[str]:
    """torchdiffeq's fixed-grid rk4 against pysciml's, eager and compiled (CPU time), where those rows ran."""
    if "torchdiffeq-rk4" not in r:
        return []
    ref = r["torchdiffeq-rk4"]["cpu"]
    parts = [f"{what} {ref / r[row]['cpu']:.2f}x" for row, what in (("pysciml-rk4", "eager"),
                                                                      ("pysciml-rk4 compile", "compile=True"))
             if row in r]
    return [f"Spiral on torchdiffeq's fixed grid (rk4, step_size {GRID_STEP}), speed-up per iteration of pysciml over "
            f"torchdiffeq, CPU time: {', '.join(parts)}."]


def speedups(r: dict) -> list[str]:
    """The per-iteration speed-ups over torchdiffeq (target >= 3x), eager and compiled: process CPU time (the
    verdict: the machine may be shared) and wall time."""
    lines = _grid_speedups(r)
    if "torchdiffeq" not in r:
        return lines or ["torchdiffeq not installed (pip install -e .[bench]): no ratio."]
    for suffix, what in (("", "eager"), (" compile", "compile=True")):
        if "pysciml" + suffix not in r or "pysciml-adjoint" + suffix not in r:
            continue
        a, b = (r[ref]["time"] / r[row + suffix]["time"] for ref, row in PAIRS)
        ac, bc = (r[ref]["cpu"] / r[row + suffix]["cpu"] for ref, row in PAIRS)
        verdict = "met" if min(ac, bc) >= 3.0 else "met for odeint only" if ac >= 3.0 else (
            "met for odeint_adjoint only" if bc >= 3.0 else "missed")
        lines.append(f"Spiral, speed-up per iteration of pysciml ({what}) over torchdiffeq: CPU time odeint "
                     f"{ac:.2f}x, odeint_adjoint {bc:.2f}x (target >= 3x: {verdict}); wall time {a:.2f}x, {b:.2f}x.")
    if "pysciml-perstep compile" in r and "pysciml compile" in r:  # the whole loop against the per-step programs
        ratios = [r["torchdiffeq"]["cpu"] / r[row]["cpu"] for row in ("pysciml compile", "pysciml-perstep compile")]
        lines.append(f"Spiral, pysciml odeint(compile=True) over torchdiffeq odeint, CPU time: whole loop (one "
                     f"differentiated while_loop program) {ratios[0]:.2f}x, the scalar loop's per-step programs "
                     f"{ratios[1]:.2f}x.")
    if "pysciml-batch compile" in r:  # the whole compiled loop, differentiated (one trajectory per start)
        c = r["pysciml-batch compile"]["time"]
        lines.append(f"Spiral, pysciml batched compile=True (whole loop and its backward as while_loop programs) over "
                     f"torchdiffeq: odeint {r['torchdiffeq']['time'] / c:.2f}x, odeint_adjoint "
                     f"{r['torchdiffeq-adjoint']['time'] / c:.2f}x per iteration (wall); CPU time "
                     f"{r['torchdiffeq']['cpu'] / r['pysciml-batch compile']['cpu']:.2f}x / "
                     f"{r['torchdiffeq-adjoint']['cpu'] / r['pysciml-batch compile']['cpu']:.2f}x.")
    return lines


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("Task 4 (neural ODE)", device)
    if skip is not None:
        return skip
    iters = {"full": 100, "small": 20, "smoke": 4}[size]  # smoke: 3 warm-up iterations + 1 timed
    slow = ("pysciml-batch", "pysciml-perstep")  # compiles of their own: not at smoke size
    solvers = SOLVERS if size != "smoke" else [s for s in SOLVERS if not s.startswith(slow)]
    t_spiral, r = spiral(iters, device, with_jax=size != "smoke" and device == "cpu", solvers=solvers)
    lines = speedups(r)
    if "diffrax" not in r:
        lines.append("diffrax: not run at smoke size or on the GPU (its jitted training step takes seconds to "
                     "compile).")
    stiff_text = stiff_surrogate(size, device)
    text = (f"# Task 4: neural-ODE training\n\nMachine: {environment()}. Device {device}, torch threads "
            f"{torch.get_num_threads()}.\n\n"
            f"## Spiral (torchdiffeq ode_demo), {iters} Adam iterations, float32, dopri5, rtol 1e-7, atol 1e-9\n\n"
            f"Time per iteration: median after 3 warm-up iterations (forward, loss, backward, Adam step). NFE bwd: "
            f"calls of the vector field during backward (discrete adjoints differentiate the forward calls "
            f"instead). `compile` rows: `compile=True` (the first iteration compiles; its time is given); their "
            f"field is not wrapped in a call counter (NFE '-'): the compiled program would recompile as the "
            f"counter changes.\n\n{t_spiral}\n\n" + "\n".join(lines) + "\n\n" + stiff_text)
    write_result(result_name("neural_ode", size, device), text)
    return text


def spiral_main(size: str = "small", solvers: list[str] = SOLVERS) -> str:
    """The spiral table alone (``python -m benchmarks.neural_ode spiral [size]``), without diffrax and the stiff
    surrogate: ``results/neural_ode_spiral[_size].md``."""
    start_task("Task 4 (neural ODE, spiral)", "cpu")
    iters = {"full": 100, "small": 20, "smoke": 4}[size]
    load0 = os.getloadavg()[0]
    table, r = spiral(iters, "cpu", with_jax=False, solvers=solvers)
    text = (f"# Task 4: spiral neural-ODE training\n\nMachine: {environment()}. torch threads "
            f"{torch.get_num_threads()}. Load average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at "
            f"the end.\n\n{iters} Adam iterations, float32, dopri5, rtol 1e-7, atol 1e-9. Time and "
            f"CPU time per iteration: medians after 3 warm-up iterations; 'first iteration' includes the compile.\n\n"
            f"{table}\n\n" + "\n".join(speedups(r)) + "\n")
    write_result(result_name("neural_ode_spiral", size, "cpu"), text)
    return text


def spiral_interleaved(iters: int = 60, warm: int = 10) -> str:
    """``odeint(compile=True)`` with the whole loop against the scalar loop's per-step programs and torchdiffeq,
    one training iteration of each in turn on the same batches (so load changes hit all three alike): median CPU
    time per iteration after ``warm`` (``python -m benchmarks.neural_ode interleaved [iters]``,
    ``results/neural_ode_spiral_interleaved.md``)."""
    import torchdiffeq

    from pysciml.engine import compiled_loop

    start_task("Task 4 (neural ODE, spiral, interleaved)", "cpu")
    load0 = os.getloadavg()[0]
    arms = {"pysciml odeint compile (whole loop)": "pysciml compile",
            "pysciml odeint compile (per-step programs)": "pysciml-perstep compile", "torchdiffeq odeint": ""}
    state = {}
    for name, solver in arms.items():
        model = spiral_model()
        state[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), [], solver)
    for by0, bt, by in spiral_batches(iters):
        for model, opt, cpus, solver in state.values():
            c0 = time.process_time()
            opt.zero_grad()
            if solver:
                pred = _spiral_integrator(solver.removesuffix(" compile"), model, True)(by0, bt)
            else:
                pred = torchdiffeq.odeint(model, by0, bt, method="dopri5")
            (pred - by).abs().mean().backward()
            opt.step()
            cpus.append(time.process_time() - c0)
    assert compiled_loop.ENABLED
    med = {name: statistics.median(v[2][warm:]) for name, v in state.items()}
    ref = med["torchdiffeq odeint"]
    rows = [[name, m * 1e3, ref / m] for name, m in med.items()]
    text = (f"# Task 4: spiral training, odeint(compile=True) designs interleaved\n\nMachine: {environment()}. Load "
            f"average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.\n\n{iters} Adam "
            f"iterations, each row in turn on the same batch; median CPU time per iteration after {warm}.\n\n"
            + markdown_table(["row", "CPU / iter [ms]", "torchdiffeq / row"], rows) + "\n")
    write_result("neural_ode_spiral_interleaved", text)
    return text


def spiral_profile(iters: int = 100, warm: int = 10) -> str:
    """Where a spiral training iteration of ``odeint(compile=True)`` (the whole-loop row) spends its CPU time:
    the forward solve, split into the compiled loop program (:meth:`~pysciml.engine.compiled_parts._Program.run`:
    Dynamo's guards, the runtime wrapper and inductor's wrapper of the ``while_loop`` program) and the Python around
    it (``odeint``'s entry, checks, set-up, packaging), the loss, the backward (the program's backward) and Adam;
    medians per iteration after ``warm`` (``python -m benchmarks.neural_ode profile [iters]``; printed, not
    written: the machine may be shared, so run it beside an interleaved comparison)."""
    from pysciml.engine import compiled_parts

    start_task("Task 4 (neural ODE, spiral, profile)", "cpu")
    model = spiral_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    integrate = _spiral_integrator("pysciml", model, True)
    program = [0.0]
    run = compiled_parts._Program.run

    def timed_run(self: compiled_parts._Program, *args: object, **kwargs: object) -> object:
        c0 = time.process_time()
        try:
            return run(self, *args, **kwargs)
        finally:
            program[0] += time.process_time() - c0

    parts: dict[str, list[float]] = {k: [] for k in ("forward", "program", "around", "loss", "backward", "adam",
                                                      "iteration")}
    compiled_parts._Program.run = timed_run  # type: ignore[method-assign]
    try:
        for by0, bt, by in spiral_batches(iters):
            program[0] = 0.0
            c0 = time.process_time()
            opt.zero_grad()
            pred = integrate(by0, bt)
            c1 = time.process_time()
            lossv = (pred - by).abs().mean()
            c2 = time.process_time()
            lossv.backward()
            c3 = time.process_time()
            opt.step()
            c4 = time.process_time()
            for key, v in zip(parts, (c1 - c0, program[0], c1 - c0 - program[0], c2 - c1, c3 - c2, c4 - c3, c4 - c0),
                              strict=True):
                parts[key].append(v)
    finally:
        compiled_parts._Program.run = run  # type: ignore[method-assign]
    med = {k: statistics.median(v[warm:]) * 1e3 for k, v in parts.items()}
    rows = [[k, v, 100.0 * v / med["iteration"]] for k, v in med.items()]
    return (f"Spiral odeint(compile=True), whole loop: CPU time per training iteration (medians after {warm} of "
            f"{iters}; load average {os.getloadavg()[0]:.1f})\n\n"
            + markdown_table(["part", "CPU [ms]", "% of iteration"], rows) + "\n")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "interleaved":  # interleaved [iters]
        print(spiral_interleaved(int(sys.argv[2]) if len(sys.argv) > 2 else 60))
    elif len(sys.argv) > 1 and sys.argv[1] == "profile":  # profile [iters]
        print(spiral_profile(int(sys.argv[2]) if len(sys.argv) > 2 else 100))
    elif len(sys.argv) > 1 and sys.argv[1] == "spiral":  # spiral [size] [solver,solver,...]
        chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else SOLVERS
        print(spiral_main(sys.argv[2] if len(sys.argv) > 2 else "small", chosen))
    else:
        print(main())
