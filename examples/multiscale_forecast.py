"""Issue 16, reproduction (b): forecasts on held-out Kuramoto-Sivashinsky (KS) and FitzHugh-Nagumo (FHN)
trajectories by latent HiTS, full-state HiTS, a hybrid HiTS (the stiff solver as finest level), a latent neural
ODE, and the direct stiff solver, with forecast error over the horizon and online time measured in one run.

Hamid et al. (arXiv 2407.00011), KS notebook (N = 120, dt = 0.01, 5,121 steps, latent 8): latent HiTS MSE
1.42e-3 in 3.03 s online, full-state HiTS 3.22e-3 in 20.58 s.

Setup (all printed into the results file):

* Data from pysciml's solvers (``ks_dataset``: KenCarp4, rtol 1e-7, finite differences, L = 22, transient 40
  dropped; ``fhn_dataset``: Rodas5P, rtol 1e-7, from t = 0), sampled every base ``dt``. Trajectories split into
  training, validation (band selection) and test sets; every forecast starts from a test trajectory's first
  state and runs over the whole trajectory.
* States scaled by one mean and one standard deviation of the training data; networks in float32; errors in
  the data's own units: MSE over test trajectories, forecast steps 1..T and state entries.
* Autoencoder as in reproduction (a) (``train_ae``: ReLU, widths ``--ae-hidden``, Adam with cosine decay).
* HiTS: levels 0..``--levels`` (steps ``2**m dt``), ReLU MLPs ``--hits-hidden``, each level trained with the
  multi-step rollout loss (``--n-forward`` steps, Adam lr 1e-3, ``--hits-epochs`` epochs, batch ``--batch``);
  the band of levels is selected on the validation trajectories (for latent HiTS, by the decoded error).
* Hybrid HiTS: the full-state networks of the selected band without level 0, and one fixed step of size ``dt`` of
  the data's own method on the true equations as the finest level (the HiTS papers' hybrid with a classical
  integrator).
* Latent neural ODE: the same frozen autoencoder, an MLP latent field (tanh), Tsit5 rtol 1e-4, trained on random
  windows of ``--node-window`` base steps (backprop through the solver).
* Direct solver: the data's own method (KenCarp4 for KS, Rodas5P for FHN) from the exact test states, at
  rtol 1e-1 .. 1e-6 (atol = rtol/100) and with fixed steps ``2**j dt`` for ``j = 0..--levels`` (the HiTS steps);
  "matched error" is the fastest of these settings whose MSE is at most the best learned model's.
* Online time: best of ``--repeats`` timed calls after one warm-up, all test trajectories as one batch, one
  torch thread, no gradient.

``--full``: the paper's KS size (N = 120, dt = 0.01, 5,120 steps per trajectory, levels 0..10), FHN at dt = 0.1
for 5,120 steps; hours on a CPU, not run here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hnn_common import Stopwatch, add_common_flags, command_line, machine_line, md_table, pyplot, sci  # noqa: E402
from multiscale_models import (  # noqa: E402
    Scaled,
    best_time,
    direct_forecast,
    fit_autoencoder,
    fit_hits,
    fit_latent_node,
    hybrid_fine_step,
)
from report import run_systems, write_text  # noqa: E402

from pysciml.problems import fhn_dataset, ks_dataset, load_dataset, save_dataset  # noqa: E402

PAPER = {"ks": {"latent HiTS": (1.42e-3, 3.03), "full-state HiTS": (3.22e-3, 20.58)}}  # MSE, online seconds
RTOLS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
LEARNED = ("latent HiTS", "full-state HiTS", "latent NODE")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_flags(p)
    p.add_argument("--systems", nargs="+", default=["ks", "fhn"], choices=["ks", "fhn"])
    p.add_argument("--train", type=int, default=24, help="training trajectories")
    p.add_argument("--val", type=int, default=4, help="validation trajectories (band selection)")
    p.add_argument("--test", type=int, default=8, help="test trajectories")
    p.add_argument("--steps", type=int, default=None, help="base steps per trajectory")
    p.add_argument("--ks-n", type=int, default=None)
    p.add_argument("--ks-dt", type=float, default=None)
    p.add_argument("--fhn-dt", type=float, default=None)
    p.add_argument("--latent", type=int, default=8)
    p.add_argument("--ae-hidden", type=int, nargs="*", default=[256, 128])
    p.add_argument("--ae-epochs", type=int, default=60)
    p.add_argument("--levels", type=int, default=None, help="coarsest HiTS level M (steps 2**m dt, m = 0..M)")
    p.add_argument("--hits-hidden", type=int, nargs="*", default=[128, 128])
    p.add_argument("--hits-epochs", type=int, default=100)
    p.add_argument("--n-forward", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--node-width", type=int, default=64)
    p.add_argument("--node-window", type=int, default=10)
    p.add_argument("--node-batch", type=int, default=64)
    p.add_argument("--node-iters", type=int, default=600)
    p.add_argument("--node-lr", type=float, default=3e-3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="tqdm bars while training")
    p.add_argument("--cache", type=Path, default=None,
                   help="folder of .npz data sets: load a system's data from it if present, else generate and save")
    p.add_argument("--no-write", action="store_true", help="do not write the markdown/png (tests)")
    return p


def _defaults(a: argparse.Namespace) -> argparse.Namespace:
    fill = {"steps": 5120 if a.full else 400, "ks_n": 120 if a.full else 64, "ks_dt": 0.01 if a.full else 0.05,
            "fhn_dt": 0.1 if a.full else 1.0, "levels": 10 if a.full else 5}
    for k, v in fill.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.n_forward * 2**a.levels >= a.steps + 1:
        raise SystemExit("--steps must exceed --n-forward * 2**--levels (the coarsest level's training window)")
    return a


def make_data(system: str, a: argparse.Namespace) -> dict[str, Any]:
    """The system's data set; with ``--cache``, read from (or written to) an ``.npz`` named by its settings."""
    n = a.train + a.val + a.test
    dt = a.ks_dt if system == "ks" else a.fhn_dt
    path = None if a.cache is None else a.cache / f"{system}_n{n}_dt{dt:g}_T{a.steps}_N{a.ks_n}_seed{a.seed}.npz"
    if path is not None and path.exists():
        data = load_dataset(path)
        data["params"]["loaded_from"] = path.name
        return data
    if system == "ks":
        data = ks_dataset(n, N=a.ks_n, L=22.0, dt=dt, n_steps=a.steps, transient=40.0, seed=a.seed)
    else:
        data = fhn_dataset(n, dt=dt, n_steps=a.steps, seed=a.seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_dataset(path, data)
    return data


def per_step_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """MSE at each forecast step ``(T,)``, over trajectories and state entries."""
    return ((pred.double() - truth) ** 2).mean(dim=(0, 2))


def run_system(system: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train the three learned models, time every forecaster on the test set, return errors and times."""
    with Stopwatch() as sw_data:
        data = make_data(system, a)
    u, params = data["u"], data["params"]
    t = data["t"]
    dt = float(t[1] - t[0])
    tr, va, te = u[:a.train], u[a.train:a.train + a.val], u[a.train + a.val:]
    scale = Scaled(float(tr.mean()), float(tr.std()))
    trs, vas = scale.fwd(tr), scale.fwd(va)
    x0, n_steps = te[:, 0], te.shape[1] - 1
    res: dict[str, Any] = {"params": params, "n": u.shape[-1], "dt": dt, "T": n_steps, "data_s": sw_data.seconds,
                           "var": float(te.var()), "methods": {}, "train_s": {}, "truth": te[0]}
    methods = res["methods"]

    x0_train, truth_train = tr[:a.test, 0], tr[:a.test]

    def record(name: str, forecast: Any, note: str = "", *, learned: bool = False, repeats: int | None = None
               ) -> None:
        """Time ``forecast(x0)`` on the test set; learned models are also scored on training trajectories."""
        pred, secs = best_time(lambda: forecast(x0), a.repeats if repeats is None else repeats)
        curve = per_step_mse(pred, te)
        row = {"mse": float(curve[1:].mean()), "curve": curve, "s": secs, "note": note, "pred": pred[0],
               "horizons": [float(curve[1:h + 1].mean()) for h in horizons]}
        if learned:
            with torch.no_grad():
                row["train_mse"] = float(per_step_mse(forecast(x0_train), truth_train)[1:].mean())
        methods[name] = row
        print(f"{system} {name:24s} MSE {row['mse']:.3e}  online {secs:.3f} s {note}", flush=True)

    horizons = sorted({max(1, n_steps // 20), max(1, n_steps // 4), n_steps})
    res["horizons"] = [h * dt for h in horizons]
    record("persistence", lambda x: x[:, None].expand(-1, n_steps + 1, -1), "x(t) = x(0)")
    with Stopwatch() as sw:
        ae = fit_autoencoder(trs.reshape(-1, trs.shape[-1]), a)
    res["train_s"]["autoencoder"] = sw.seconds
    with torch.no_grad():
        recon = scale.inv(ae(scale.fwd(te.reshape(-1, te.shape[-1]))))
    res["ae_test_mse"] = float(((recon - te.reshape(-1, te.shape[-1])) ** 2).mean())

    with Stopwatch() as sw:
        lat, _ = fit_hits(a.latent, trs, a, (ae.encode, ae.decode))
        band_l = lat.select_levels(vas)
    res["train_s"]["latent HiTS"] = sw.seconds + res["train_s"]["autoencoder"]
    record("latent HiTS", lambda x: scale.inv(lat.forecast(scale.fwd(x), n_steps, range(band_l[0], band_l[1] + 1))),
           f"band {band_l}", learned=True)

    with Stopwatch() as sw:
        full, _ = fit_hits(u.shape[-1], trs, a)
        band_f = full.select_levels(vas)
    res["train_s"]["full-state HiTS"] = res["train_s"]["hybrid HiTS"] = sw.seconds
    record("full-state HiTS", lambda x: scale.inv(full.forecast(scale.fwd(x), n_steps,
                                                                range(band_f[0], band_f[1] + 1))),
           f"band {band_f}", learned=True)
    hyb = list(range(max(1, band_f[0]), max(1, band_f[1]) + 1))
    fine = hybrid_fine_step(system, params, scale, dt)
    record("hybrid HiTS", lambda x: scale.inv(full.forecast(scale.fwd(x), n_steps, hyb, fine_step=fine)),
           f"levels {hyb[0]}..{hyb[-1]} + one solver step as level 0", repeats=1)
    if fine.fallbacks:
        methods["hybrid HiTS"]["note"] += f" ({fine.fallbacks} of its calls fell back to an adaptive solve)"

    with Stopwatch() as sw:
        node, _ = fit_latent_node(ae, trs, dt, a)
    res["train_s"]["latent NODE"] = sw.seconds + res["train_s"]["autoencoder"]
    tt = t.float()
    record("latent NODE", lambda x: scale.inv(node(scale.fwd(x), tt).transpose(0, 1)), "Tsit5 rtol 1e-4",
           learned=True)

    alg = "KenCarp4" if system == "ks" else "Rodas5P"
    for rtol in RTOLS:
        record(f"solver rtol {rtol:.0e}", lambda x, r=rtol: direct_forecast(system, params, x, t, r),
               f"{alg} adaptive")
    for j in range(a.levels + 1):  # fixed steps as coarse as the HiTS levels
        h = dt * 2**j
        try:
            record(f"solver dt {h:g}", lambda x, h=h: direct_forecast(system, params, x, t, 1e-6, step=h),
                   f"{alg} fixed step {2**j} dt")
        except Exception as exc:  # noqa: BLE001  (a fixed step too large for the method: report, go on)
            print(f"{system} solver dt {h:g} failed: {exc}", flush=True)
            first = str(exc).split(" (a fixed step")[0].split(";")[0]
            res["failed"] = [*res.get("failed", []), f"{alg} fixed dt {h:g}: {first}"]
    best = min(LEARNED, key=lambda m: methods[m]["mse"])
    ok = [m for m in methods if m.startswith("solver") and methods[m]["mse"] <= methods[best]["mse"]]
    res["best_learned"] = best
    res["matched"] = min(ok, key=lambda m: methods[m]["s"]) if ok else None
    return res


def _plots(res: dict[str, dict[str, Any]], out: Path) -> list[str]:
    plt = pyplot()
    names = []
    fig, axes = plt.subplots(1, len(res), figsize=(5.5 * len(res), 3.8), squeeze=False)
    for ax, (system, r) in zip(axes[0], res.items(), strict=True):
        time_axis = torch.arange(r["T"] + 1) * r["dt"]
        shown = ["persistence", *LEARNED, "hybrid HiTS"] + ([r["matched"]] if r["matched"] else [])
        for m in shown:
            ax.semilogy(time_axis[1:], r["methods"][m]["curve"][1:], label=m)
        ax.set_xlabel("forecast time")
        ax.set_ylabel("MSE over test trajectories")
        ax.set_title(f"{system.upper()} ({r['n']} states)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "multiscale_forecast_error.png", dpi=120)
    plt.close(fig)
    names.append("multiscale_forecast_error.png")
    for system, r in res.items():
        shown = ["truth", *LEARNED] + ([r["matched"]] if r["matched"] else [])
        fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 3.6), sharey=True)
        width = r["n"] if system == "ks" else r["n"] // 2  # FHN: the activator u only
        for ax, m in zip(axes, shown, strict=True):
            img = r["truth"] if m == "truth" else r["methods"][m]["pred"]
            ax.imshow(img[:, :width].double().numpy(), aspect="auto", origin="lower", cmap="RdBu_r",
                      extent=(0, width, 0, r["T"] * r["dt"]), vmin=float(r["truth"][:, :width].min()),
                      vmax=float(r["truth"][:, :width].max()))
            ax.set_title(m, fontsize=8)
            ax.set_xlabel("grid index")
        axes[0].set_ylabel("time")
        fig.tight_layout()
        name = f"multiscale_forecast_{system}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_results(res: dict[str, dict[str, Any]], a: argparse.Namespace, argv: Sequence[str] | None,
                  seconds: float) -> Path:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = _plots(res, out)
    lines = ["# Multiscale forecasts: latent HiTS, full-state HiTS, latent neural ODE, direct solver "
             "(issue 16, reproduction b)", "",
             f"Produced by `{command_line('multiscale_forecast.py', argv)}` "
             f"({'paper size' if a.full else 'reduced size'}).", "",
             "MSE: over the test trajectories, forecast steps 1..T and state entries, in the data's own units "
             "(`MSE to t=h`: steps up to time h only); `rel`: the whole-horizon MSE over the test data's variance; "
             "`on training traj.`: the same whole-horizon MSE forecasting the first training trajectories (the "
             "paper's notebook reports its figures on the data it trained on). Online: best of "
             f"{a.repeats} timed forecasts of all {a.test} test trajectories as one batch after a warm-up (hybrid "
             "HiTS: one timed forecast), one torch thread. Training time is offline and listed apart.", ""]
    for system, r in res.items():
        p = r["params"]
        lines += [f"## {system.upper()}", "",
                  f"State size {r['n']}; base dt {r['dt']:g}; {r['T']} forecast steps (horizon "
                  f"{r['T'] * r['dt']:g}); {a.train} / {a.val} / {a.test} training / validation / test "
                  f"trajectories; data {'loaded from the cache' if 'loaded_from' in p else 'generation'} "
                  f"{r['data_s']:.0f} s; autoencoder (latent {a.latent}) test "
                  f"reconstruction MSE {sci(r['ae_test_mse'])}.", "",
                  "Generator: `" + ", ".join(f"{k}={v}" for k, v in p.items()) + "`", ""]
        hz = [f"MSE to t={h:g}" for h in r["horizons"][:-1]]
        body = []
        for m, v in r["methods"].items():
            paper = PAPER.get(system, {}).get(m)
            body.append([m, *[sci(e) for e in v["horizons"][:-1]], sci(v["mse"]), sci(v["mse"] / r["var"]),
                         sci(v["train_mse"]) if "train_mse" in v else "", f"{v['s']:.3f}",
                         f"{r['train_s'][m]:.0f}" if m in r["train_s"] else "", v["note"],
                         f"{sci(paper[0])} in {paper[1]} s" if paper else ""])
        lines += [md_table(["forecaster", *hz, f"MSE to t={r['horizons'][-1]:g}", "rel", "on training traj.",
                            "online s", "training s", "setting", "paper (N=120)"], body), ""]
        best, matched = r["best_learned"], r["matched"]
        bm = r["methods"][best]
        if matched:
            mm = r["methods"][matched]
            lines += [f"Best learned model: **{best}** (MSE {sci(bm['mse'])}, {bm['s']:.3f} s online). Direct solver "
                      f"at matched error (the fastest setting tried whose MSE is at most that): **{matched}** (MSE "
                      f"{sci(mm['mse'])}, {mm['s']:.3f} s): {mm['s'] / bm['s']:.2f}x the learned model's online "
                      f"time, with {bm['mse'] / max(mm['mse'], 1e-300):.2g}x lower error.", ""]
        else:
            lines += [f"Best learned model: **{best}** (MSE {sci(bm['mse'])}); no solver tolerance tried reached "
                      "an error that high or lower.", ""]
        lines += [f"Fixed-step solves that failed (not in the table): {'; '.join(r['failed'])}.", ""] \
            if r.get("failed") else []
        lines += [f"Training (offline): autoencoder {r['train_s']['autoencoder']:.0f} s; the HiTS and NODE rows "
                  "include it where the model uses it.", ""]
    lines += [f"![{n}]({n})" for n in pngs] + ["", machine_line(seconds)]
    return write_text(out / "multiscale_forecast.md", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    return run_systems(_defaults(build_parser().parse_args(argv)), argv, run_system, write_results)


if __name__ == "__main__":
    main()
