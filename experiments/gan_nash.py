"""Why a GAN's gradient game need not converge: the bilinear game min_x max_y V(x, y) = x y.

Its unique Nash equilibrium is (0, 0). Each player follows its own gradient (x descends
dV/dx = y, y ascends dV/dy = x), computed with `jax.grad` and run as one `lax.scan`:

* simultaneous steps, (x, y) <- (x - lr y, y + lr x): the update is sqrt(1 + lr^2) times a
  rotation, so the iterates spiral *outwards*, the radius growing by exactly sqrt(1 + lr^2) per
  step, whatever the learning rate (Goodfellow 2016, NIPS tutorial section 8.2; Weng 2019);
* alternating steps (y moves after seeing the new x): the map has determinant 1 and conserves
  x^2 - lr x y + y^2, so the iterates orbit the equilibrium on an ellipse forever;
* extragradient (a look-ahead step, Korpelevich 1976; used for GANs by Gidel et al. 2019) as a
  contrast: the radius shrinks by sqrt(1 - lr^2 + lr^4) per step and the game converges.

Figures: the trajectories, the phase portrait of the continuous-time dynamics (circles), and the
radius against steps beside the closed forms; a table of the measured growth factor per step
against sqrt(1 + lr^2) for several learning rates.

    python -m experiments.gan_nash [--quick] [--workdir DIR] [--learning-rate LR] [--num-steps N]
"""

from __future__ import annotations

import dataclasses
import math

from experiments._framework import Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0  # unused: the game is deterministic
    x0: float = 1.0
    y0: float = 1.0
    learning_rate: float = 0.1
    num_steps: int = 300
    table_learning_rates: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


QUICK = {"num_steps": 150}

METHODS = ("simultaneous", "alternating", "extragradient")


def value(x, y):
    """V(x, y) = x y: x minimizes, y maximizes."""
    return x * y


def trajectory(method: str, x0: float, y0: float, lr: float, num_steps: int):
    """[num_steps + 1, 2] iterates of one gradient method on V = x y (float64 NumPy)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    grad_x = jax.grad(value, argnums=0)
    grad_y = jax.grad(value, argnums=1)

    def step(p, _):
        x, y = p
        if method == "simultaneous":
            x_new, y_new = x - lr * grad_x(x, y), y + lr * grad_y(x, y)
        elif method == "alternating":
            x_new = x - lr * grad_x(x, y)
            y_new = y + lr * grad_y(x_new, y)
        elif method == "extragradient":
            xh, yh = x - lr * grad_x(x, y), y + lr * grad_y(x, y)  # look ahead
            x_new, y_new = x - lr * grad_x(xh, yh), y + lr * grad_y(xh, yh)
        else:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        p = jnp.stack([x_new, y_new])
        return p, p

    with jax.enable_x64(True):  # radii up to sqrt(2)^300 ~ 1e45 overflow float32
        p0 = jnp.array([x0, y0], jnp.float64)
        _, ps = jax.lax.scan(step, p0, None, length=num_steps)
        return np.concatenate([np.asarray(p0)[None], np.asarray(ps)])


def growth_per_step(path) -> float:
    """The geometric-mean factor by which the radius changes per step."""
    import numpy as np

    r = np.hypot(path[:, 0], path[:, 1])
    return float(np.exp(np.mean(np.diff(np.log(r)))))


def predicted_growth(method: str, lr: float) -> float:
    """Closed forms: |eigenvalue| of the linear update (radius factor per step; for alternating
    steps the orbit is an ellipse, the per-step factor averages to 1)."""
    if method == "simultaneous":
        return math.sqrt(1.0 + lr**2)
    if method == "alternating":
        return 1.0
    return math.sqrt(1.0 - lr**2 + lr**4)


def run(ctx: Context) -> dict:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    cfg: Config = ctx.config
    lr, n = cfg.learning_rate, cfg.num_steps
    paths = {m: trajectory(m, cfg.x0, cfg.y0, lr, n) for m in METHODS}
    r0 = math.hypot(cfg.x0, cfg.y0)
    rep = ctx.report
    rep.text(f"The game min_x max_y x*y from ({cfg.x0}, {cfg.y0}), learning rate {lr}, {n} steps; "
             "gradients by `jax.grad`, iterations in one `lax.scan` (float64).")

    # trajectories and phase portrait -------------------------------------------------------
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    lim = 1.1 * max(np.abs(p).max() for p in paths.values())
    grid = np.linspace(-lim, lim, 21)
    gx, gy = np.meshgrid(grid, grid)
    axes[0].streamplot(gx, gy, -gy, gx, color="0.7", density=1.0)  # d(x, y)/dt = (-y, x)
    for m, style in zip(METHODS, ("C3", "C0", "C2")):
        axes[0].plot(*paths[m].T, style, lw=1, label=m)
    axes[0].plot(0, 0, "k*", ms=12, label="Nash equilibrium")
    axes[0].set_aspect("equal")
    axes[0].set_xlim(-lim, lim)
    axes[0].set_ylim(-lim, lim)
    axes[0].set_xlabel("x (minimizes xy)")
    axes[0].set_ylabel("y (maximizes xy)")
    axes[0].set_title("trajectories over the phase portrait (-y, x)")
    axes[0].legend(fontsize=8, loc="lower left")
    steps = np.arange(n + 1)
    for m, style in zip(METHODS, ("C3", "C0", "C2")):
        axes[1].plot(steps, np.hypot(*paths[m].T), style, label=f"{m} (measured)")
        axes[1].plot(steps, r0 * predicted_growth(m, lr) ** steps, "k:", lw=1)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_title("radius; dotted: r0 * (closed-form factor)^t")
    axes[1].legend(fontsize=8)
    for m, style in zip(("simultaneous", "alternating"), ("C3", "C0")):
        axes[2].plot(steps, paths[m][:, 0], style, label=f"x, {m}")
        axes[2].plot(steps, paths[m][:, 1], style + "--", label=f"y, {m}")
    axes[2].set_xlabel("step")
    axes[2].set_title("the players oscillate")
    axes[2].legend(fontsize=8)
    rep.figure(fig, "trajectories", caption="simultaneous gradient steps spiral out, alternating steps orbit, "
               "extragradient converges")

    # the growth table ----------------------------------------------------------------------
    rows, records = [], []
    for eta in cfg.table_learning_rates:
        sim = trajectory("simultaneous", cfg.x0, cfg.y0, eta, n)
        alt = trajectory("alternating", cfg.x0, cfg.y0, eta, n)
        g_sim = growth_per_step(sim)
        q = alt[:, 0] ** 2 - eta * alt[:, 0] * alt[:, 1] + alt[:, 1] ** 2
        r_alt = np.hypot(*alt.T)
        rec = {
            "learning_rate": eta,
            "simultaneous_growth": g_sim,
            "predicted_growth": math.sqrt(1 + eta**2),
            "relative_error": abs(g_sim - math.sqrt(1 + eta**2)) / math.sqrt(1 + eta**2),
            "alternating_radius_min": float(r_alt.min()),
            "alternating_radius_max": float(r_alt.max()),
            "alternating_invariant_drift": float(np.abs(q - q[0]).max() / q[0]),
        }
        records.append(rec)
        ctx.metrics.write(rec)
        rows.append((eta, g_sim - 1.0, rec["predicted_growth"] - 1.0, rec["relative_error"], float(np.hypot(*sim[-1])),
                     rec["alternating_radius_min"], rec["alternating_radius_max"], rec["alternating_invariant_drift"]))
    rep.table(
        ["lr", "simultaneous: radius factor per step - 1", "sqrt(1 + lr^2) - 1", "rel. error", f"radius after {n} steps",
         "alternating: min radius", "max radius", "drift of x^2 - lr xy + y^2"],
        rows,
        caption=f"simultaneous steps grow the radius by sqrt(1 + lr^2) per step; alternating steps keep it bounded "
                f"(start radius {r0:.3f}) and conserve x^2 - lr x y + y^2",
    )
    main = next(r for r in records if r["learning_rate"] == lr) if lr in cfg.table_learning_rates else None
    return {
        "learning_rate": lr,
        "simultaneous_growth": growth_per_step(paths["simultaneous"]),
        "predicted_growth": math.sqrt(1 + lr**2),
        "alternating_final_radius": float(np.hypot(*paths["alternating"][-1])),
        "extragradient_final_radius": float(np.hypot(*paths["extragradient"][-1])),
        "max_relative_error": max(r["relative_error"] for r in records),
        "max_alternating_invariant_drift": max(r["alternating_invariant_drift"] for r in records),
        **({"alternating_radius_max": main["alternating_radius_max"]} if main else {}),
        "jax_backend": jax.default_backend(),
    }


EXPERIMENT = Experiment(
    name="gan_nash",
    title="The x*y game: simultaneous gradient steps spiral away from the Nash equilibrium",
    description="Simultaneous, alternating and extragradient steps on min_x max_y xy; radius growth vs sqrt(1+lr^2).",
    config=Config,
    quick=QUICK,
    run=run,
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
