"""Information theory, the course's first chapter, reproduced with `genjax.divergences`.

1. The weather-coding table (bits): entropy, the average length of a code (the cross-entropy
   with q = 2^-length) and their difference (the KL divergence), for the course's examples.
2. KL vs JS between p = N(0, 1) and q = N(1, 1): the densities, the mixture m = (p + q) / 2 and
   the pointwise integrands; KL(p||q) = KL(q||p) = 0.5 nats, JS = 0.1114 nats.
3. The sparse-autoencoder penalty's curve KL(Bernoulli(rho) || Bernoulli(rho_hat)).
4. Forward vs reverse KL: one Gaussian fitted with optax to a two-mode mixture by minimizing
   KL(p||q) (mass-covering: it sits between the modes) and KL(q||p) (mode-seeking: it picks one).

Densities are discretised on a grid: for a fine grid the discrete divergences of the binned
distributions converge to the continuous ones (the bin width cancels in the ratio p/q).

    python -m experiments.info_theory [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import math

from experiments._framework import Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    grid_min: float = -12.0  # the grid on which densities are discretised
    grid_max: float = 13.0
    grid_points: int = 20_001
    mixture_separation: float = 4.0  # p = 0.5 N(-s/2, sd^2) + 0.5 N(s/2, sd^2)
    mixture_std: float = 0.6
    fit_steps: int = 2_000  # Adam steps for each of the two fits
    learning_rate: float = 0.05
    init_mu: float = 1.0  # the fits start from N(init_mu, 1)
    bernoulli_rho: float = 0.25  # the sparsity target in the Bernoulli-KL curve


QUICK = {"grid_points": 4_001, "fit_steps": 600}

# The course's weather-coding examples: (scenario, probabilities, code lengths or None for a code
# of fixed length, the course's quoted entropy and average length in bits).
SCENARIOS = (
    ("2 equiprobable states", (0.5, 0.5), None, 1.0, 1.0),
    ("8 equiprobable states", (1 / 8,) * 8, None, 3.0, 3.0),
    ("sunny 75% / rainy 25%", (0.75, 0.25), None, 0.811, 1.0),
    ("8 states, fixed 3-bit code", (0.35, 0.35, 0.10, 0.10, 0.04, 0.04, 0.01, 0.01), None, 2.23, 3.0),
    ("8 states, code 2,2,3,3,4,4,5,5", (0.35, 0.35, 0.10, 0.10, 0.04, 0.04, 0.01, 0.01),
     (2, 2, 3, 3, 4, 4, 5, 5), 2.23, 2.42),
    ("rainy region: reversed p, same code", (0.01, 0.01, 0.04, 0.04, 0.10, 0.10, 0.35, 0.35),
     (2, 2, 3, 3, 4, 4, 5, 5), 2.23, 4.58),
)


def coding_table():
    """Rows (scenario, H(p), average code length, KL, course H, course length), all in bits."""
    import jax.numpy as jnp

    from genjax import divergences as dv

    rows = []
    for name, probs, lengths, course_h, course_len in SCENARIOS:
        p = jnp.asarray(probs, jnp.float32)
        if lengths is None:  # a fixed-length code: ceil(log2 n) bits per symbol
            lengths = (math.ceil(math.log2(len(probs))),) * len(probs)
        q = 2.0 ** -jnp.asarray(lengths, jnp.float32)  # the distribution the code is optimal for
        h = float(dv.entropy(p, base=2))
        ce = float(dv.cross_entropy(p, q, base=2))
        kl = float(dv.kl_divergence(p, q, base=2))
        rows.append((name, h, ce, kl, course_h, course_len))
    return rows


def gaussian_pair(config: Config):
    """KL(p||q), KL(q||p), JS(p, q) of N(0,1) and N(1,1) binned on the grid, in nats.

    The divergences are computed from the log-densities (`*_from_logits`): far in the tails the
    binned probabilities underflow float32 (XLA flushes subnormals to zero), which would turn
    KL(p||q) into +inf where the exact value is 0.5.
    """
    import jax.numpy as jnp

    from genjax import divergences as dv

    x = jnp.linspace(config.grid_min, config.grid_max, config.grid_points)
    logp = -0.5 * x**2  # unnormalised log-densities: the *_from_logits functions normalise
    logq = -0.5 * (x - 1.0) ** 2
    values = {
        "kl_pq_nats": float(dv.kl_divergence_from_logits(logp, logq)),
        "kl_qp_nats": float(dv.kl_divergence_from_logits(logq, logp)),
        "js_nats": float(dv.js_divergence_from_logits(logp, logq)),
        "kl_pq_closed_form_nats": float(dv.gaussian_kl(jnp.zeros(1), jnp.zeros(1), jnp.ones(1), jnp.zeros(1))),
    }
    return values


def fit_gaussians(config: Config):
    """Fits N(mu, sigma^2) to the binned two-mode mixture by forward and by reverse KL (Adam)."""
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import divergences as dv

    x = jnp.linspace(config.grid_min, config.grid_max, config.grid_points)
    half, sd = config.mixture_separation / 2, config.mixture_std
    logp = jnp.logaddexp(-0.5 * ((x + half) / sd) ** 2, -0.5 * ((x - half) / sd) ** 2)
    p = jax.nn.softmax(logp)

    def logq_of(theta):
        mu, log_sigma = theta
        return -0.5 * ((x - mu) / jnp.exp(log_sigma)) ** 2

    def q_of(theta):
        return jax.nn.softmax(logq_of(theta))

    # From log-densities: finite values and gradients however far the tails underflow.
    losses = {
        "forward": lambda theta: dv.kl_divergence_from_logits(logp, logq_of(theta)),  # KL(p||q): mass-covering
        "reverse": lambda theta: dv.kl_divergence_from_logits(logq_of(theta), logp),  # KL(q||p): mode-seeking
    }
    opt = optax.adam(config.learning_rate)
    # Reverse KL is not convex in (mu, sigma): besides the two one-mode minima (KL = log 2 for
    # well-separated modes) it has a symmetric local minimum at mu = 0 with a wide sigma (for the
    # default mixture: sigma = 1.79, KL = 1.138 nats), which a start at mu = 0.5 falls into.
    # The default start, mu = 1, rolls to the right-hand mode.
    theta0 = jnp.array([config.init_mu, 0.0])
    key = jax.random.key(config.seed)
    theta0 = theta0 + 0.05 * jax.random.normal(key, (2,))

    results = {}
    for name, loss in losses.items():

        @jax.jit
        def train(theta, loss=loss):
            def step(carry, _):
                theta, opt_state = carry
                value, grad = jax.value_and_grad(loss)(theta)
                updates, opt_state = opt.update(grad, opt_state, theta)
                return (optax.apply_updates(theta, updates), opt_state), value

            (theta, _), trace = jax.lax.scan(step, (theta, opt.init(theta)), None, length=config.fit_steps)
            return theta, trace

        theta, trace = train(theta0)
        results[name] = {"mu": float(theta[0]), "sigma": float(jnp.exp(theta[1])),
                         "final_kl_nats": float(trace[-1]), "trace": trace}
    # Moment matching is the exact minimiser of the forward KL over Gaussians (Bishop, PRML 10.7).
    results["forward_optimum"] = {"mu": 0.0, "sigma": math.sqrt(half**2 + sd**2)}
    return x, p, q_of, results


def run(ctx: Context) -> dict:
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import divergences as dv

    config: Config = ctx.config
    rep = ctx.report
    rep.text("The first chapter's worked examples, each computed by `genjax.divergences`.")

    # 1. weather coding --------------------------------------------------------------------------
    rows = coding_table()
    rep.heading("Coding the weather: entropy, code length, KL (bits)")
    rep.table(
        ["scenario", "entropy H(p)", "average code length H(p, q)", "KL(p||q) = difference",
         "course: H(p)", "course: length"],
        [(n, h, ce, kl, ch, cl) for n, h, ce, kl, ch, cl in rows],
        caption="q = 2^-length is the distribution a code is optimal for; its average length is the cross-entropy",
        digits=4,
    )
    ctx.log("coding table: " + "; ".join(f"{r[0]}: H={r[1]:.3f} L={r[2]:.3f}" for r in rows))

    # 2. KL vs JS --------------------------------------------------------------------------------
    values = gaussian_pair(config)
    # The plotted densities and integrands, in float64 from the log-densities.
    xs = np.linspace(-4.0, 5.0, 2001)
    logp = -0.5 * xs**2 - 0.5 * np.log(2 * np.pi)
    logq = -0.5 * (xs - 1.0) ** 2 - 0.5 * np.log(2 * np.pi)
    logm = np.logaddexp(logp, logq) - np.log(2.0)
    p, q, m = np.exp(logp), np.exp(logq), np.exp(logm)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(xs, p, label="p = N(0, 1)")
    axes[0].plot(xs, q, label="q = N(1, 1)")
    axes[0].plot(xs, m, "--", label="m = (p + q) / 2")
    axes[0].set_title("densities")
    axes[1].plot(xs, p * (logp - logq), label=f"p log(p/q): KL(p||q) = {values['kl_pq_nats']:.4f}")
    axes[1].plot(xs, q * (logq - logp), label=f"q log(q/p): KL(q||p) = {values['kl_qp_nats']:.4f}")
    axes[1].plot(xs, 0.5 * (p * (logp - logm) + q * (logq - logm)),
                 label=f"JS integrand: JS = {values['js_nats']:.4f}")
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_title("pointwise integrands (nats per unit x)")
    for ax in axes:
        ax.set_xlim(-4, 5)
        ax.legend(fontsize=8)
    rep.heading("KL vs JS between N(0, 1) and N(1, 1)")
    rep.figure(fig, "kl_vs_js", caption="KL is asymmetric in general (equal here by symmetry); JS is symmetric and bounded by log 2")
    rep.table(
        ["quantity", "computed (nats)", "reference (nats)", "source"],
        [("KL(p||q)", values["kl_pq_nats"], 0.5, "closed form (mu_p - mu_q)^2 / 2"),
         ("KL(q||p)", values["kl_qp_nats"], 0.5, "closed form"),
         ("gaussian_kl(q=N(0,1), p=N(1,1))", values["kl_pq_closed_form_nats"], 0.5, "closed form"),
         ("JS(p, q)", values["js_nats"], 0.1114, "quadrature (scipy.integrate.quad)"),
         ("JS bound", math.log(2), math.log(2), "log 2")],
        digits=5,
    )

    # 3. Bernoulli KL curve ----------------------------------------------------------------------
    rho = config.bernoulli_rho
    rho_hat = jnp.linspace(1e-3, 1 - 1e-3, 999)
    curve = dv.bernoulli_kl(jnp.full_like(rho_hat, rho), rho_hat)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(rho_hat, curve)
    ax.axvline(rho, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("rho_hat (mean activation)")
    ax.set_ylabel("KL (nats)")
    ax.set_ylim(0, 3)
    ax.set_title(f"KL(Bernoulli({rho}) || Bernoulli(rho_hat))")
    rep.heading("The sparsity penalty")
    rep.figure(fig, "bernoulli_kl", caption=f"zero at rho_hat = {rho}, growing without bound as rho_hat -> 0 or 1")

    # 4. forward vs reverse KL -------------------------------------------------------------------
    xf, pf, q_of, fits = fit_gaussians(config)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    dxf = float(xf[1] - xf[0])
    axes[0].fill_between(xf, pf / dxf, alpha=0.3, label="p: two-mode mixture")
    for name, style in (("forward", "-"), ("reverse", "--")):
        f = fits[name]
        qf = q_of(jnp.array([f["mu"], math.log(f["sigma"])]))
        axes[0].plot(xf, qf / dxf, style,
                     label=f"{name} KL fit: mu={f['mu']:.2f}, sigma={f['sigma']:.2f}")
        axes[1].plot(np.asarray(f["trace"]), style, label=f"{name} KL")
    axes[0].set_xlim(-6, 6)
    axes[0].set_title("KL(p||q) covers the mass; KL(q||p) seeks a mode")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("Adam step")
    axes[1].set_title("objective (nats)")
    for ax in axes:
        ax.legend(fontsize=8)
    rep.heading("Forward vs reverse KL")
    rep.figure(fig, "forward_vs_reverse_kl", caption="one Gaussian fitted to a mixture of two")
    opt = fits["forward_optimum"]
    rep.table(
        ["objective", "mu", "sigma", "final KL (nats)", "note"],
        [("KL(p||q) (forward)", fits["forward"]["mu"], fits["forward"]["sigma"], fits["forward"]["final_kl_nats"],
          f"moment matching gives mu = 0, sigma = {opt['sigma']:.3f}"),
         ("KL(q||p) (reverse)", fits["reverse"]["mu"], fits["reverse"]["sigma"], fits["reverse"]["final_kl_nats"],
          f"one mode: mu = +-{config.mixture_separation / 2:.2f}, sigma ~ {config.mixture_std}")],
    )
    for name in ("forward", "reverse"):
        ctx.metrics.write({"fit": name, "mu": fits[name]["mu"], "sigma": fits[name]["sigma"],
                           "final_kl_nats": fits[name]["final_kl_nats"]})

    summary = {f"coding/{r[0]}/{k}": v for r in rows for k, v in (("entropy_bits", r[1]), ("length_bits", r[2]), ("kl_bits", r[3]))}
    summary.update(values)
    summary.update({f"fit/{n}/{k}": fits[n][k] for n in ("forward", "reverse") for k in ("mu", "sigma", "final_kl_nats")})
    return summary


EXPERIMENT = Experiment(
    name="info_theory",
    title="Information theory: entropy, cross-entropy, KL and JS",
    description="The course's worked examples computed with genjax.divergences.",
    config=Config,
    quick=QUICK,
    run=run,
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
