"""Diffusion on 2-D toy data: the forward process, the learned reverse process, and mode coverage.

For the swiss roll, the 8-Gaussian ring and the 25-Gaussian grid (`genjax.data`), one MLP
denoiser (`genjax.nn.MlpDenoiser`) per dataset is trained with the simple loss of Ho et al.
(2020) (`genjax.diffusion.ddpm_loss`; T = 1000, linear betas 1e-4 .. 0.02), then sampled with
ancestral DDPM sampling (1000 steps) and the fast samplers of `genjax.diffusion` (`samplers`: DDIM,
DPM-Solver++(2M) and its SDE variant, Euler and Heun on Karras sigmas), each at every budget of
`nfe` denoiser calls per sample. The report shows

1. the forward process: snapshots X_0, X_t, ..., X_T of data pushed through q(x_t | x_0): the
   structure dissolves into N(0, I);
2. the reverse process: the same snapshots of the sampling chain, and the paths of single points;
3. samples over the data, and for the ring and grid the mode metrics of the GAN chapter
   (`genjax.gan.mode_metrics`: high-quality samples within 3 std of a mode, captured modes,
   reverse KL; 2,500 samples as in PacGAN), in one table with the GANs: the `gan_mode_collapse`
   run beside this run directory (`<workdir>/../gan_mode_collapse/summary.json`) when there is
   one, and the published numbers it quotes; and a sliced Wasserstein-1 distance to fresh data
   for all three datasets;
4. quality against denoiser calls: for every sampler and budget, the sliced W1 and (ring, grid)
   the high-quality fraction and modes captured, as a table and a log-log figure, against DDPM's
   1000 steps and the floor of exact samples (two data samples of the same size).

Data are divided by their overall standard deviation before diffusion (so the noise level
matches the data's scale) and samples are scaled back: all numbers and figures are in data
space. The MLP sees its input coordinates through a positional encoding (`fourier_levels`
sin/cos octaves): the ring's and grid's modes are narrow (std 0.01 and 0.05) and a plain MLP of
the coordinates learns them slowly (measured on the grid with the quick config: 5-17% of
high-quality samples without the encoding, 85% with 6 octaves). `samples.npy` holds the DDPM
samples, float32 [num_datasets, num_samples, 2] in the order of `datasets`.

    python -m experiments.diffusion_2d [--quick] [--steps N] [--workdir DIR] [--seed N]
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._diffusion_common import (check_samplers, init_with_ema, make_ddpm_step, make_schedule, sampler_fns,
                                          warmup_cosine)
from experiments._framework import Built, Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    datasets: tuple[str, ...] = ("swiss_roll", "ring", "grid")
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    steps: int = 20_000  # training steps per dataset
    batch_size: int = 512
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    hidden: int = 256
    num_layers: int = 4
    time_dim: int = 64
    fourier_levels: int = 6  # positional encoding of the coordinates (0: off)
    ema_decay: float = 0.999
    num_samples: int = 2_500  # samples scored per dataset and sampler (PacGAN uses 2,500)
    samplers: tuple[str, ...] = ("ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun")
    nfe: tuple[int, ...] = (5, 10, 20, 50)  # denoiser calls per sample, for each sampler
    checkpoint_every: int = 5_000
    log_every: int = 500
    keep_checkpoints: int = 2
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"

    def __post_init__(self):  # checked before the workdir is written
        check_samplers(self.samplers, self.nfe, self.num_timesteps)


QUICK = {"steps": 3_000, "batch_size": 256, "hidden": 128, "num_layers": 3, "checkpoint_every": 1_500,
         "log_every": 250, "ema_decay": 0.995, "nfe": (5, 10, 20)}

SNAPSHOT_TIMES = (0, 49, 99, 199, 399, 999)  # 0-based timesteps of the snapshots (for T = 1000)
GAN_EXPERIMENT = "gan_mode_collapse"  # the GAN chapter's ring/grid benchmark, for the joint table


class ToyBatches:
    """`batches(start, k)["x"]`: float32 [k, batch_size, 2], data divided by `scale`; step s draws
    from `fold_in(key(seed), s)`, so a resumed run sees the same data."""

    def __init__(self, name: str, batch_size: int, seed: int, scale: float):
        import jax

        from genjax import data

        sampler = data.toy_distribution(name).sample
        base = jax.random.key(seed)
        self._draw = jax.jit(jax.vmap(lambda s: sampler(jax.random.fold_in(base, s), batch_size) / scale))

    def batches(self, start_step: int, num_steps: int) -> dict:
        import numpy as np

        return {"x": np.asarray(self._draw(np.arange(start_step, start_step + num_steps)))}


def data_scale(name: str) -> float:
    """The overall standard deviation of a toy distribution (all coordinates pooled), from
    100,000 exact samples with a fixed key."""
    import jax
    import numpy as np

    from genjax import data

    x = np.asarray(data.toy_distribution(name).sample(jax.random.key(12345), 100_000))
    return float(np.sqrt(np.mean((x - x.mean(0)) ** 2)))


def build(cfg: Config) -> Built:
    """The denoiser (`model`), the `schedule`, `apply_fn`, `init(key) -> TrainState` and the train
    step (EMA in extras)."""
    import jax
    import jax.numpy as jnp
    import optax

    from genjax.nn import MlpDenoiser

    model = MlpDenoiser(hidden=cfg.hidden, num_layers=cfg.num_layers, time_dim=cfg.time_dim,
                        fourier_levels=cfg.fourier_levels)
    schedule = make_schedule(cfg.schedule, cfg.num_timesteps)
    tx = optax.adam(warmup_cosine(cfg.learning_rate, cfg.warmup_steps, cfg.steps))
    apply_fn = lambda params, x, t: model.apply({"params": params}, x, t)

    def init(key):
        params = jax.jit(model.init)(key, jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32))["params"]
        return init_with_ema(key, params, tx)

    step = make_ddpm_step(apply_fn, schedule, cfg.ema_decay, lambda x: x, "x")
    return Built(model=model, init=init, step=step, schedule=schedule, apply_fn=apply_fn)


def make_samplers(model, schedule, cfg: Config, num: int) -> dict:
    """`{label: (fn(params, key) -> samples [num, 2], denoiser calls)}`: "DDPM T" with all T steps,
    then every sampler of `cfg.samplers` at every budget of `cfg.nfe` (`sampler_fns`; unclipped)."""
    apply_fn = lambda params, x, t: model.apply({"params": params}, x, t)
    return sampler_fns(apply_fn, schedule, (num, 2), samplers=cfg.samplers, nfe=cfg.nfe)


def sliced_w1(key, x, y, num_directions: int = 32) -> float:
    """Mean over random unit directions of the exact 1-D W1 between the projections of x and y."""
    import jax
    import jax.numpy as jnp

    from genjax import divergences

    d = jax.random.normal(key, (num_directions, x.shape[1]))
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    return float(jnp.mean(jax.vmap(lambda u: divergences.wasserstein_1d(x @ u, y @ u))(d)))


def gan_rows(ctx: Context, dataset: str) -> list[tuple]:
    """Rows (model, high-quality fraction, modes captured, reverse KL) of the GAN chapter for
    `dataset`: the `gan_mode_collapse` run beside this run directory (means over its seeds), if
    there is one, and the published numbers that experiment quotes."""
    from genjax import report

    rows = []
    path = ctx.workdir.resolve().parent / GAN_EXPERIMENT / "summary.json"
    if path.exists():
        summary = report.read_json(path)
        for key, value in summary.items():
            if key.startswith(f"{dataset}/") and isinstance(value, dict) and "high_quality_mean" in value:
                rows.append((f"GAN run ({GAN_EXPERIMENT}): {key.split('/', 1)[1]}, mean over seeds",
                             value["high_quality_mean"], value.get("modes_mean"), value.get("reverse_kl_mean")))
    try:
        from experiments._gan_common import PUBLISHED
    except ImportError:  # pragma: no cover - the GAN chapter is absent
        PUBLISHED = ()
    for name, method, modes, high_quality_percent, reverse_kl in PUBLISHED:
        if name == dataset:
            rows.append((f"published: {method}", high_quality_percent / 100.0, modes, reverse_kl))
    return rows


def quality_vs_nfe_2d_figure(rep, cfg: Config, results: dict, families: dict, ddpm_name: str, summary: dict):
    """"quality_vs_nfe": per dataset (columns), the sliced W1 against denoiser calls (log-log), one
    line per sampler family, DDPM as a star and the exact-sample floor dotted; for datasets with
    modes a second row with the high-quality fraction."""
    import matplotlib.pyplot as plt

    from genjax import data

    with_modes = any(data.toy_distribution(n).modes is not None for n in cfg.datasets)
    n_rows = 2 if with_modes else 1
    fig, axes = plt.subplots(n_rows, len(cfg.datasets), figsize=(4.2 * len(cfg.datasets), 3.3 * n_rows),
                             squeeze=False)
    for c, name in enumerate(cfg.datasets):
        metrics = results[name]["metrics"]
        has_modes = data.toy_distribution(name).modes is not None
        for k, (family, labels) in enumerate(families.items()):
            nfe = [metrics[lb]["nfe"] for lb in labels]
            axes[0, c].plot(nfe, [metrics[lb]["sliced_w1"] for lb in labels], "o-", color=f"C{k}", label=family, ms=3)
            if has_modes:
                axes[1, c].plot(nfe, [metrics[lb]["high_quality"] for lb in labels], "o-", color=f"C{k}",
                                label=family, ms=3)
        ddpm = metrics[ddpm_name]
        axes[0, c].plot([ddpm["nfe"]], [ddpm["sliced_w1"]], "*", color="k", ms=9, label=ddpm_name)
        axes[0, c].axhline(summary[f"{name}/sliced_w1_data_vs_data"], color="0.5", ls=":", label="exact samples")
        axes[0, c].set_xscale("log")
        axes[0, c].set_yscale("log")
        axes[0, c].set_title(name, fontsize=10)
        axes[0, c].set_ylabel("sliced W1 to data")
        if has_modes:
            axes[1, c].plot([ddpm["nfe"]], [ddpm["high_quality"]], "*", color="k", ms=9, label=ddpm_name)
            axes[1, c].axhline(0.989, color="0.5", ls=":", label="exact samples (98.9%)")
            axes[1, c].set_xscale("log")
            axes[1, c].set_ylim(0, 1.02)
            axes[1, c].set_ylabel("high-quality fraction")
        elif n_rows == 2:
            axes[1, c].axis("off")
        axes[-1, c].set_xlabel("denoiser calls per sample (NFE)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    rep.figure(fig, "quality_vs_nfe", caption="sample quality against denoiser calls per sample, per sampler, from "
                                              "the same EMA weights: sliced W1 to fresh data (log-log; lower is "
                                              "better; the dotted line is two exact samples' distance) and, for "
                                              "the ring and grid, the fraction within 3 std of a mode")
    plt.close(fig)


def run(ctx: Context) -> dict:
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import data, diffusion, gan, report, train

    cfg: Config = ctx.config
    for name in cfg.datasets:
        data.toy_distribution(name)  # validates the name
    built = build(cfg)
    model, schedule, init, step = built.model, built.schedule, built.init, built.step
    T = schedule.num_timesteps
    snapshot_times = sorted({min(t, T - 1) for t in SNAPSHOT_TIMES})
    samplers = make_samplers(model, schedule, cfg, cfg.num_samples)
    traj_steps = max(cfg.nfe)  # the DDIM paths of the trajectory figure
    key = jax.random.key(cfg.seed)
    summary: dict = {"datasets": list(cfg.datasets)}
    results = {}
    # the chains of smaller batches, for the reverse-process figures (compiled once for all datasets)
    ddpm_chain = jax.jit(lambda p, k: diffusion.sample(
        k, lambda x, t: model.apply({"params": p}, x, t), schedule, (1000, 2), return_trajectory=True)[1])
    ddim_chain = jax.jit(lambda p, k: diffusion.ddim_sample(
        k, lambda x, t: model.apply({"params": p}, x, t), schedule, (100, 2), traj_steps, return_trajectory=True)[1])
    for i, name in enumerate(cfg.datasets):
        scale = data_scale(name)
        ctx.log(f"{name}: data scale {scale:.3f}; training {cfg.steps} steps")
        source = ToyBatches(name, cfg.batch_size, cfg.seed + 1000 * i, scale)
        fit = ctx.fit(init(jax.random.fold_in(key, i)), step, source, subdir=name)
        ema = fit.state.extras["ema_params"]
        sample_key = jax.random.fold_in(jax.random.fold_in(key, i), 7)
        results[name] = {
            "scale": scale, "fit": fit, "samples": {}, "seconds": {}, "ema": ema, "sample_key": sample_key,
            "trajectory": np.asarray(ddpm_chain(ema, jax.random.fold_in(sample_key, 1))) * scale,  # [T + 1, 1000, 2]
            "ddim_trajectory": np.asarray(ddim_chain(ema, jax.random.fold_in(sample_key, 3))) * scale,  # [n + 1, 100, 2]
            "data": np.asarray(data.toy_distribution(name).sample(jax.random.fold_in(sample_key, 2), cfg.num_samples)),
            "digest": train.params_digest(ema),
        }
    for sampler_name, (fn, _) in samplers.items():  # one program per sampler serves every dataset
        outputs, seconds = train.time_compiled(fn, [(results[n]["ema"], results[n]["sample_key"]) for n in cfg.datasets])
        for name, x in zip(cfg.datasets, outputs):
            results[name]["samples"][sampler_name] = np.asarray(x) * results[name]["scale"]
            results[name]["seconds"][sampler_name] = seconds / len(cfg.datasets)  # the same program and shapes

    ddpm_name = f"DDPM {T}"
    families: dict[str, list[str]] = {}  # "DDIM" -> its labels, by denoiser calls
    for label in samplers:
        if label != ddpm_name:
            families.setdefault(label.split()[0], []).append(label)
    largest = [labels[-1] for labels in families.values()]  # each fast sampler at its largest budget
    near_10 = [min(labels, key=lambda lb: (abs(samplers[lb][1] - 10), samplers[lb][1])) for labels in families.values()]
    samples_array = np.stack([results[n]["samples"][ddpm_name] for n in cfg.datasets]).astype(np.float32)
    if ctx.is_main_process:
        np.save(ctx.workdir / "samples.npy", samples_array)

    # ---------------------------------------------------------------- metrics and tables
    rep = ctx.report
    rep.text(
        f"Each dataset gets its own `genjax.nn.MlpDenoiser` ({cfg.num_layers} x {cfg.hidden}, time embedding "
        f"{cfg.time_dim}, {cfg.fourier_levels} octaves of positional encoding of the coordinates) trained for "
        f"{cfg.steps} steps of batch {cfg.batch_size} with `genjax.diffusion.ddpm_loss` "
        f"(T = {T}, {cfg.schedule} betas), Adam with warm-up and cosine decay, EMA {cfg.ema_decay} of the weights "
        "(the EMA weights are sampled). Data are divided by their standard deviation for diffusion and scaled back.")
    quality_rows, nfe_rows = [], []
    for name in cfg.datasets:
        res = results[name]
        dist = data.toy_distribution(name)
        w_key = jax.random.key(cfg.seed + 99)
        floor = sliced_w1(w_key, jnp.asarray(res["data"]),
                          dist.sample(jax.random.fold_in(w_key, 1), cfg.num_samples))
        summary[f"{name}/sliced_w1_data_vs_data"] = floor
        res["metrics"] = {}
        for sampler_name, (_, nfe) in samplers.items():
            x = res["samples"][sampler_name]
            tag = "ddpm" if sampler_name == ddpm_name else sampler_name.lower().replace(" ", "_")
            m = {"nfe": nfe, "sliced_w1": sliced_w1(w_key, jnp.asarray(x), jnp.asarray(res["data"])),
                 "seconds_per_1000": res["seconds"][sampler_name] / cfg.num_samples * 1000}
            if dist.modes is not None:
                mm = jax.device_get(gan.mode_metrics(x, dist.modes, dist.std))
                m.update(high_quality=float(mm["high_quality"]), modes_captured=int(mm["modes_captured"]),
                         reverse_kl=float(mm["reverse_kl"]))
                if sampler_name == ddpm_name or sampler_name in largest:
                    quality_rows.append((name, f"diffusion: {sampler_name}", m["high_quality"], m["modes_captured"],
                                         m["reverse_kl"]))
            res["metrics"][sampler_name] = m
            for k, v in m.items():
                if k != "nfe":
                    summary[f"{name}/{tag}/{k}"] = v
            nfe_rows.append((name, sampler_name, nfe, m["sliced_w1"], m.get("high_quality", "-"),
                             m.get("modes_captured", "-"), m["seconds_per_1000"]))
        nfe_rows.append((name, "exact samples (floor)", "-", floor, "-", "-", "-"))
        if dist.modes is not None:
            m = jax.device_get(gan.mode_metrics(res["data"], dist.modes, dist.std))
            quality_rows.append((name, "exact samples (reference)", float(m["high_quality"]),
                                 int(m["modes_captured"]), float(m["reverse_kl"])))
            for i, row in enumerate(nfe_rows):
                if row[0] == name and row[1] == "exact samples (floor)":
                    nfe_rows[i] = (*row[:4], float(m["high_quality"]), int(m["modes_captured"]), "-")
            quality_rows += [(name, *row) for row in gan_rows(ctx, name)]
        summary[f"{name}/params_digest"] = res["digest"]
        summary[f"{name}/final_loss"] = res["fit"].history[-1]["loss"] if res["fit"].history else None

    if quality_rows:
        rep.heading("Mode coverage on the ring and the grid")
        rep.table(["dataset", "model / sampler", "high-quality fraction", "modes captured", "reverse KL (nats)"],
                  quality_rows,
                  caption=f"{cfg.num_samples} samples each; `genjax.gan.mode_metrics` (within 3 std of a mode; "
                          "ring: 8 modes, std 0.01; grid: 25 modes, std 0.05). For exact samples the high-quality "
                          "fraction is 1 - exp(-9/2) = 98.9%. Diffusion rows: DDPM and each fast sampler at its "
                          "largest budget (all budgets: the next table). GAN rows: the gan_mode_collapse run beside "
                          "this one (when it exists; its own steps and seeds) and the published numbers it quotes.")
    rep.heading("Quality against denoiser calls")
    rep.table(["dataset", "sampler", "denoiser calls", "sliced W1 to data", "high-quality fraction",
               "modes captured", "s per 1,000 samples"], nfe_rows,
              caption="every sampler from the same EMA weights and start key; sliced Wasserstein-1 (mean over 32 "
                      f"random directions of the exact 1-D W1) between {cfg.num_samples} samples and as many fresh "
                      "data points; the floor row is the same distance between two data samples. DDIM: eta = 0, "
                      "leading spacing; DPM++: DPM-Solver++(2M), linspace spacing (SDE: its stochastic variant); "
                      "Euler and Heun on the Karras sigmas (Heun's N steps take 2N - 1 calls). Sampling time: one "
                      "compiled program per sampler (compiled ahead, block_until_ready), the mean over the datasets' "
                      "calls, per 1,000 samples.")

    # ---------------------------------------------------------------- figures
    n_rows = len(cfg.datasets)
    lim = {n: np.abs(results[n]["data"]).max() * 1.25 for n in cfg.datasets}

    def scatter(ax, pts, name, color="C0", s=1.5, alpha=0.5):
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, color=color, linewidths=0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])

    fig, axes = plt.subplots(n_rows, len(snapshot_times), figsize=(2.1 * len(snapshot_times), 2.2 * n_rows),
                             squeeze=False)
    fwd_key = jax.random.key(cfg.seed + 5)
    for r, name in enumerate(cfg.datasets):
        res = results[name]
        x0 = jnp.asarray(res["data"][:1000] / res["scale"])
        noise = jax.random.normal(jax.random.fold_in(fwd_key, r), x0.shape)
        for c, t in enumerate(snapshot_times):
            xt = np.asarray(diffusion.q_sample(schedule, x0, t, noise)) * res["scale"]
            ax = axes[r, c]
            scatter(ax, xt, name)
            m = max(lim[name], 3.2 * res["scale"])
            ax.set_xlim(-m, m)
            ax.set_ylim(-m, m)
            if r == 0:
                ax.set_title(f"t = {t}  (abar = {float(schedule.alphas_cumprod[t]):.3g})", fontsize=8)
        axes[r, 0].set_ylabel(name)
    rep.figure(fig, "forward_process", caption="the forward process q(x_t | x_0): snapshots of 1,000 data points "
                                               "at timesteps t (0-based; t = 0 is one step of noise)")
    plt.close(fig)

    columns = [*reversed(snapshot_times), None]  # None: the samples x_0
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(2.1 * len(columns), 2.2 * n_rows), squeeze=False)
    for r, name in enumerate(cfg.datasets):
        traj = results[name]["trajectory"]
        for c, t in enumerate(columns):
            ax = axes[r, c]
            # trajectory[T - 1 - t]: the chain at noise level t (before step t is undone); [T]: x_0
            scatter(ax, traj[T] if t is None else traj[T - 1 - t], name, color="C1")
            m = max(lim[name], 3.2 * results[name]["scale"])
            ax.set_xlim(-m, m)
            ax.set_ylim(-m, m)
            if r == 0:
                ax.set_title("x_0 (samples)" if t is None else f"t = {t}", fontsize=8)
        axes[r, 0].set_ylabel(name)
    rep.figure(fig, "reverse_process", caption="the learned reverse process (DDPM, EMA weights): the sampling "
                                               "chain of 1,000 points, from pure noise to samples")
    plt.close(fig)

    fig, axes = plt.subplots(2, n_rows, figsize=(4.2 * n_rows, 8.4), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for c, name in enumerate(cfg.datasets):
        for r, (label, traj, num, every) in enumerate((
                (f"DDPM ({T} steps)", results[name]["trajectory"], 6, max(T // 100, 1)),
                (f"DDIM ({traj_steps} steps, eta=0)", results[name]["ddim_trajectory"], 30, 1))):
            ax = axes[r, c]
            scatter(ax, results[name]["data"], name, color="0.75", s=1, alpha=0.6)
            n_states = traj.shape[0]
            idx = np.unique(np.r_[np.arange(0, n_states, every), n_states - 1])
            for j in range(num):
                path = traj[idx, j]
                for a in range(len(idx) - 1):  # colour by the chain's progress
                    ax.plot(path[a:a + 2, 0], path[a:a + 2, 1], color=cmap(a / (len(idx) - 1)), lw=0.7)
                ax.plot(*path[-1], "o", color="C3", ms=3)
            m = lim[name] * 1.6
            ax.set_xlim(-m, m)
            ax.set_ylim(-m, m)
            ax.set_title(f"{name}: {label}", fontsize=9)
    rep.figure(fig, "trajectories", caption="reverse trajectories from noise to samples (colour: start = purple, "
                                            "end = yellow; red dot: the sample) over the data (grey); DDPM paths "
                                            f"drawn every {max(T // 100, 1)} steps")
    plt.close(fig)

    shown = [ddpm_name, *near_10]  # DDPM and each fast sampler at the budget nearest 10 calls
    fig, axes = plt.subplots(len(shown), n_rows, figsize=(4.2 * n_rows, 4.2 * len(shown)), squeeze=False)
    for r, sampler_name in enumerate(shown):
        for c, name in enumerate(cfg.datasets):
            ax = axes[r, c]
            dist = data.toy_distribution(name)
            scatter(ax, results[name]["data"], name, color="0.75", s=2, alpha=0.6)
            scatter(ax, results[name]["samples"][sampler_name], name, color="C0", s=2, alpha=0.6)
            if dist.modes is not None:
                ax.plot(dist.modes[:, 0], dist.modes[:, 1], "x", color="C3", ms=5)
            ax.set_xlim(-lim[name], lim[name])
            ax.set_ylim(-lim[name], lim[name])
            ax.set_title(f"{name}: {sampler_name} (W1 {results[name]['metrics'][sampler_name]['sliced_w1']:.3f})",
                         fontsize=9)
    rep.figure(fig, "samples", caption=f"{cfg.num_samples} samples (blue) over as many data points (grey); "
                                       "modes marked x; DDPM and each fast sampler at the budget nearest 10 "
                                       "denoiser calls")
    plt.close(fig)

    quality_vs_nfe_2d_figure(rep, cfg, results, families, ddpm_name, summary)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in cfg.datasets:
        history = report.read_jsonl(ctx.workdir / name / "metrics.jsonl")
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss (mean over each logging interval)")
    ax.legend()
    rep.figure(fig, "training_loss", caption="the simple loss E||eps - eps_theta(x_t, t)||^2 per coordinate")
    plt.close(fig)

    summary["samples"] = "samples.npy"
    summary["params_digest"] = train.params_digest({n: results[n]["fit"].state.params for n in cfg.datasets})
    summary["resumed_from"] = {n: results[n]["fit"].resumed_from for n in cfg.datasets}
    return summary


EXPERIMENT = Experiment(
    name="diffusion_2d",
    title="Diffusion on 2-D toy data: forward and reverse processes, mode coverage",
    description="DDPM with an MLP denoiser on the swiss roll, the 8-Gaussian ring and the 25-Gaussian grid.",
    config=Config,
    quick=QUICK,
    run=run,
    trains=True,
    evaluation_fields=frozenset({"num_samples", "samplers", "nfe"}),
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
