"""VQ-VAE on MNIST: a 7x7 grid of discrete codes, the EMA codebook vs the codebook loss, a beta sweep, FSQ, LFQ, RVQ, the rotation trick.

A convolutional VQ-VAE (van den Oord et al. 2017) maps a 28x28 digit to a 7x7 grid of
D-dimensional latents (two stride-2 convolutions), snaps each to its nearest code among K
(`genjax.vq.quantize`, straight-through gradient) and decodes the grid back (nearest-neighbour
upsampling + convolutions). It is trained once per variant, all on the same batches from the same
initial weights:

- codebook learned by the loss: `recon + vq_loss(z, e, beta)` (eq. 3 of the paper), the codebook
  a parameter;
- EMA codebook: `recon + beta * commitment_loss(z, e)`, the codebook an `EmaCodebook` in
  `TrainState.extras`, updated in the step by `genjax.vq.ema_update` (decay 0.99, dm-haiku's
  zero-debiased, Laplace-smoothed update);
- each of them for beta in (0.1, 0.25, 1, 2): the paper reports results robust in that range;
- `quantizers`, each once at `main_beta`, at matched bits per image (7x7 positions x log2 of the
  codebook size; K = 128: 7 bits per position, 343 per image):
  "fsq": finite scalar quantization (Mentzer et al. 2023, `genjax.vq.fsq`), levels with exactly K
  codes (`fsq_levels`, by default 8s and 4s: K = 128 -> (8, 4, 4), 1024 -> (8, 8, 4, 4)), no
  codebook and no latent loss; "lfq": lookup-free quantization (Yu et al. 2023, MAGVIT-v2,
  `genjax.vq.lfq`), log2 K sign bits, with its entropy penalty (`lfq_entropy_weight`,
  `lfq_temperature`) and beta x commitment; FSQ and LFQ set the encoder's output channels to
  their dimension (3 and 7 at K = 128; no projection layers); "rvq": residual VQ (Zeghidour et al.
  2021, SoundStream, `genjax.vq.residual_quantize`), `rvq_levels` EMA codebooks of round(K^(1/Q))
  codes (K = 128, Q = 2: 2 x 11, 121 combinations, 6.92 bits per position, 339 per image, the
  nearest to 7), `vq.residual_ema_update`; "ema_rotation" / "loss_rotation": the EMA codebook /
  codebook loss with `genjax.vq.rotation_trick` (Fifty et al. 2024) instead of the straight-through
  gradient.

Codes used and perplexity count a quantizer's index values (FSQ/LFQ: their implicit codebooks;
RVQ: the combinations of its levels' codes). Dead codes: the codes no training latent used in a
logged interval (`log_every` steps; the step's metric `code_counts`), logged every interval,
plotted in `dead_codes.png`, the last interval's in the table. `summary["target"]` measures the
target "FSQ / the rotation trick use >= 95 % of their codes with a held-out MSE no worse than the
EMA codebook's".

The reconstruction loss is the mean squared error divided by the training data's variance (as in
the Sonnet/dm-haiku VQ-VAE example). The report shows reconstructions, the codebook usage
histogram, perplexity and reconstruction error over training, and a table of held-out
reconstruction error, perplexity and codes used for every variant. Each variant trains in its own
subdirectory (`<workdir>/<codebook>_beta<beta>/`, with checkpoints and exact resume).

To generate, a prior over the codes: a small causal Transformer (`genjax.nn.CodePrior`) is
trained on the training digits' 7x7 code grids of the saved variant (subdirectory `prior/`,
checkpoints and exact resume like the variants), sampled ancestrally (`genjax.nn.sample_codes`,
temperature 1) and decoded; `fid_samples` samples are scored by MNIST-feature FID/KID
(`experiments._features`) next to the VQ-VAE's reconstructions, and listed in
`summary["generators"]` with their training (VQ-VAE + prior) and sampling seconds.

The trained autoencoder (the `main_quantizer` variant at `main_beta`, by default the EMA
codebook; "fsq" and "lfq" can be saved too, with their implicit codebooks, not "rvq") is saved for
the latent-diffusion experiment: `<workdir>/autoencoder.msgpack` (parameters `{"encoder", "decoder", "codebook"}`,
flax msgpack, no pickle) and `<workdir>/autoencoder.json` (architecture and statistics). The
model, the saving and the loading live in `experiments/_vq_autoencoder.py`, which both
experiments import (no experiment imports another); load it with

    from experiments._vq_autoencoder import load_autoencoder     # also experiments.vqvae's
    encode, decode, info = load_autoencoder("runs/vqvae")
    z, idx = encode(images)        # uint8 [B, 28, 28, 1] (0..255) or float in [0, 1]
                                   # -> z: continuous pre-quantization latents [B, 7, 7, D] float32,
                                   #    idx: their nearest codes [B, 7, 7] int32
    x = decode(z)                  # [B, 7, 7, D] -> images [B, 28, 28, 1] float32 in [0, 1]; the
                                   # latents are first snapped to the codebook (quantize=True,
                                   # the default, as the decoder was trained); quantize=False
                                   # decodes them as they are
    info["codebook"]               # [K, D] float32 numpy array (x = decode(info["codebook"][idx]))
    info["latent_shape"], info["latent_std"], info["num_codes"], ...   # see autoencoder.json
    info["quantizer"]              # {"kind": "vq" | "fsq" | "lfq", "levels", "dim"}; FSQ: z are its
                                   # bounded latents bound(z) / floor(L / 2), decode rounds them to
                                   # the FSQ grid, info["codebook"] is the implicit codebook

`encode` and `decode` are jitted and take any batch size. For diffusion in latent space scale
the latents by `1 / info["latent_std"]` (the std of the training set's latents, Rombach et al.
2022, section 4.3.2 / appendix G).

Offline, MNIST is the embedded MNIST test split (9,000 train / 1,000 held out; `genjax.data`).

    python -m experiments.vqvae [--quick] [--steps N] [--betas 0.25,1] [--codebooks ema]
        [--quantizers fsq,lfq,rvq,ema_rotation] [--main-quantizer ema] [--workdir DIR] [--seed N]

References:
    A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
    NeurIPS 2017 (arXiv:1711.00937).
    F. Mentzer, D. Minnen, E. Agustsson, M. Tschannen, "Finite Scalar Quantization: VQ-VAE Made
    Simple", 2023 (arXiv:2309.15505; ICLR 2024).
    L. Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation"
    (MAGVIT-v2), 2023 (arXiv:2310.05737; ICLR 2024).
    N. Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021 (arXiv:2107.03312).
    C. Fifty et al., "Restructuring Vector Quantization with the Rotation Trick", 2024
    (arXiv:2410.06424; ICLR 2025).
    R. Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from experiments._features import fit_seconds, generator_record, mnist_evaluator
from experiments._framework import Built, ConfigError, Context, Experiment
from experiments._vq_autoencoder import (AUTOENCODER_CONFIG, AUTOENCODER_PARAMS, Autoencoder,  # noqa: F401
                                         Quantizer, load_autoencoder, save_autoencoder)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    steps: int = 3_000  # per variant
    batch_size: int = 64
    learning_rate: float = 1e-3
    num_codes: int = 128  # K
    latent_dim: int = 16  # D
    channels: tuple[int, ...] = (32, 64)  # encoder/decoder widths at 14x14 and 7x7
    res_blocks: int = 1
    res_hidden: int = 32
    codebooks: tuple[str, ...] = ("ema", "loss")  # "ema": EMA updates; "loss": the codebook term
    betas: tuple[float, ...] = (0.1, 0.25, 1.0, 2.0)  # commitment weights to sweep
    main_beta: float = 0.25  # the paper's beta: the variant saved as the autoencoder
    decay: float = 0.99  # EMA decay (paper, Appendix A.1)
    epsilon: float = 1e-5  # Laplace smoothing of the EMA counts (dm-haiku/Sonnet)
    restart_threshold: float = 0.0  # EMA codes used < this per batch are restarted (0: off)
    # More quantizers, each trained once at `main_beta` beside the beta sweep of `codebooks`:
    # "fsq", "lfq", "rvq", "ema_rotation", "loss_rotation" (also "ema"/"loss": `--quantizers ema` is the sweep alone).
    quantizers: tuple[str, ...] = ("fsq", "lfq", "rvq", "ema_rotation")
    main_quantizer: str = "ema"  # the variant (at main_beta) saved as the autoencoder: "ema", "loss", "fsq", ...
    fsq_levels: tuple[int, ...] | None = None  # FSQ levels per dimension; None: from num_codes (a power of 2, exactly)
    rvq_levels: int = 2  # residual VQ: Q levels of round(K^(1/Q)) EMA codes each
    lfq_entropy_weight: float = 0.1  # LFQ: weight of the entropy penalty (MAGVIT-v2 / vector-quantize-pytorch)
    lfq_temperature: float = 0.01  # LFQ: temperature of the soft assignment in the penalty
    # The prior over the saved variant's 7x7 codes (`genjax.nn.CodePrior`, a causal Transformer),
    # trained after the variants on the training digits' codes; its samples are what is scored.
    prior_steps: int = 10_000
    prior_batch_size: int = 128
    prior_width: int = 128
    prior_layers: int = 2
    prior_heads: int = 4
    prior_learning_rate: float = 1e-3  # Adam, linear warm-up then cosine decay to a tenth
    prior_weight_decay: float = 0.0  # > 0: AdamW (decoupled weight decay, Loshchilov & Hutter 2019)
    prior_dropout: float = 0.0  # GPT-2's dropout in the prior while it trains (`CodePrior.dropout`)
    fid_samples: int = 1000  # prior samples scored by MNIST-feature FID/KID
    checkpoint_every: int = 1_000
    log_every: int = 100
    eval_every: int = 1_000
    keep_checkpoints: int = 2
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"

    def __post_init__(self):  # checked before the workdir is written
        check_config(self)


# The tour's VQ chapter: the two codebooks at the paper's beta beside the two quantizers that target
# full code usage (FSQ, the rotation trick): four variants, as many as the beta sweep it replaces
# (the default config sweeps betas and runs LFQ and residual VQ too).
QUICK = {"steps": 800, "batch_size": 32, "channels": (16, 32), "res_hidden": 16, "latent_dim": 4, "betas": (0.25,),
         "quantizers": ("fsq", "ema_rotation"),
         "checkpoint_every": 400, "eval_every": 400, "log_every": 100,
         "prior_steps": 800, "prior_batch_size": 32, "prior_width": 64, "prior_layers": 2, "prior_heads": 4,
         "prior_learning_rate": 2e-3}

# `--preset standard`, the autoencoder of latent diffusion's standard preset in under half an
# hour of a 2-core CPU: the EMA codebook alone (the quick run compares both), the default widths,
# 5,000 steps of batch 64, and a deeper prior trained 12,000 steps with dropout 0.2.
# Measured (1,000 samples, floor 4.93): prior FID 16.7 (3.4x) at 6,000 prior steps. At 12,000
# (2026-12-03) FID 11.5 (2.3x), but the prior memorises the 9,000 embedded training grids: its
# held-out NLL rose from 87.8 nats (1,000 steps) to 314, worse than the uniform prior's 238, so
# that FID is not adopted. With `--prior-weight-decay 0.1` (AdamW) the same 12,000 steps gave FID
# 12.8 (2.6x) and held-out NLL 254.5, still worse than uniform: weight decay alone does not stop
# the memorising. With `--prior-dropout 0.2` (GPT-2's dropout in the prior, 2026-12-03) the same
# 12,000 steps give FID 12.37 (2.5x, floor 4.91; reconstructions 6.64) and a held-out NLL of 81.8
# nats, the best of its curve within 1 nat (81.2 at 7,000 steps), far below uniform's 238: adopted.
STANDARD = {**QUICK, "steps": 5_000, "batch_size": 64, "channels": (32, 64), "res_hidden": 32, "codebooks": ("ema",),
            "quantizers": ("ema",),
            "checkpoint_every": 1_000, "eval_every": 1_000, "prior_steps": 12_000, "prior_batch_size": 64,
            "prior_width": 128, "prior_layers": 4, "prior_dropout": 0.2}

CODEBOOKS = ("ema", "loss")
QUANTIZERS = ("ema", "loss", "fsq", "lfq", "rvq", "ema_rotation", "loss_rotation")
CODEBOOK_LABELS = {"ema": "EMA codebook", "loss": "codebook loss", "fsq": "FSQ", "lfq": "LFQ",
                   "rvq": "residual VQ (EMA)", "ema_rotation": "EMA codebook + rotation trick",
                   "loss_rotation": "codebook loss + rotation trick"}
EMA_CODEBOOKS = ("ema", "ema_rotation")  # one EmaCodebook in extras (rvq: a stack of them)
LOSS_CODEBOOKS = ("loss", "loss_rotation")  # the codebook a parameter


def variant_name(codebook: str, beta: float) -> str:
    return "fsq" if codebook == "fsq" else f"{codebook}_beta{beta:g}"  # FSQ has no commitment loss


def fsq_levels_for(num_codes: int) -> tuple[int, ...]:
    """FSQ levels with exactly `num_codes` = 2^b codes: 8s, then one or two 4s (2^7: (8, 4, 4),
    2^10: (8, 8, 4, 4)); other sizes need explicit `--fsq-levels`."""
    b = num_codes.bit_length() - 1
    if num_codes < 4 or num_codes != 2**b:
        raise ConfigError(f"--fsq-levels must be given for --num-codes {num_codes} (automatic levels need a power "
                          "of 2, at least 4)")
    fours = {0: 0, 1: 2, 2: 1}[b % 3]
    return (8,) * ((b - 2 * fours) // 3) + (4,) * fours


def quantizer_of(cfg: Config, codebook: str) -> Quantizer:
    """The `Quantizer` of a variant: its kind, levels and latent dimension at the quantizer (FSQ:
    len(levels), LFQ: log2 K bits; the encoder outputs that many channels)."""
    if codebook == "fsq":
        levels = tuple(cfg.fsq_levels) if cfg.fsq_levels else fsq_levels_for(cfg.num_codes)
        return Quantizer("fsq", levels, len(levels))
    if codebook == "lfq":
        return Quantizer("lfq", (), cfg.num_codes.bit_length() - 1)
    if codebook == "rvq":
        return Quantizer("rvq", (cfg.rvq_levels, max(2, round(cfg.num_codes ** (1 / cfg.rvq_levels)))), cfg.latent_dim)
    return Quantizer("vq", (), cfg.latent_dim)


def codebook_size(cfg: Config, codebook: str) -> int:
    """The number of index values of a variant's quantizer (K for a learned codebook)."""
    q = quantizer_of(cfg, codebook)
    return cfg.num_codes if q.kind == "vq" else q.num_codes


def variants_of(cfg: Config) -> list[tuple[str, float]]:
    """(codebook, beta) of every variant: the sweep of `codebooks` x `betas`, then `quantizers` at `main_beta`."""
    variants = [(c, b) for c in cfg.codebooks for b in cfg.betas]
    return variants + [(q, cfg.main_beta) for q in cfg.quantizers if (q, cfg.main_beta) not in variants]


def check_config(cfg: Config) -> None:
    if not cfg.codebooks or set(cfg.codebooks) - set(CODEBOOKS):
        raise ConfigError(f"--codebooks must be a non-empty subset of {list(CODEBOOKS)}, got {list(cfg.codebooks)}")
    if set(cfg.quantizers) - set(QUANTIZERS) or len(set(cfg.quantizers)) != len(cfg.quantizers):
        raise ConfigError(f"--quantizers must be distinct names from {list(QUANTIZERS)}, got {list(cfg.quantizers)}")
    if cfg.main_quantizer not in set(cfg.codebooks) | set(cfg.quantizers):
        raise ConfigError(f"--main-quantizer {cfg.main_quantizer!r} must be one of --codebooks or --quantizers "
                          f"{list(cfg.codebooks) + list(cfg.quantizers)}")
    if cfg.main_quantizer == "rvq":
        raise ConfigError("--main-quantizer 'rvq' cannot be saved as the autoencoder (its greedy residual snapping "
                          "is not idempotent on its codes); choose a codebook, 'fsq' or 'lfq'")
    if cfg.num_codes < 2:
        raise ConfigError(f"--num-codes must be >= 2, got {cfg.num_codes}")
    if "fsq" in cfg.quantizers:
        if cfg.fsq_levels and any(int(v) != v or v < 3 for v in cfg.fsq_levels):
            raise ConfigError(f"--fsq-levels must be integers >= 3, got {list(cfg.fsq_levels)}")
        if not cfg.fsq_levels:
            fsq_levels_for(cfg.num_codes)
    if "lfq" in cfg.quantizers and (cfg.num_codes & (cfg.num_codes - 1) or cfg.num_codes > 2**30):
        raise ConfigError(f"--quantizers lfq needs --num-codes a power of 2 up to 2^30 (log2 K bits), got "
                          f"{cfg.num_codes}")
    if cfg.rvq_levels < 1:
        raise ConfigError(f"--rvq-levels must be >= 1, got {cfg.rvq_levels}")
    if cfg.lfq_entropy_weight < 0 or cfg.lfq_temperature <= 0:
        raise ConfigError(f"--lfq-entropy-weight must be >= 0 and --lfq-temperature > 0, got "
                          f"{cfg.lfq_entropy_weight} and {cfg.lfq_temperature}")
    if not cfg.betas or any(b < 0 for b in cfg.betas) or len(set(cfg.betas)) != len(cfg.betas):
        raise ConfigError(f"--betas must be distinct non-negative numbers, got {list(cfg.betas)}")
    if cfg.main_beta not in cfg.betas:
        raise ConfigError(f"--main-beta {cfg.main_beta} must be one of --betas {list(cfg.betas)}")
    if len(cfg.channels) != 2:
        raise ConfigError(f"--channels needs two widths (14x14 and 7x7 stages), got {list(cfg.channels)}")
    if not 0.0 <= cfg.decay < 1.0:
        raise ConfigError(f"--decay must be in [0, 1), got {cfg.decay}")
    for name in ("prior_steps", "prior_batch_size", "prior_width", "prior_layers", "prior_heads"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.prior_dropout < 1.0:
        raise ConfigError(f"--prior-dropout must be a rate in [0, 1), got {cfg.prior_dropout}")
    if cfg.prior_width % cfg.prior_heads:
        raise ConfigError(f"--prior-width ({cfg.prior_width}) must be divisible by --prior-heads ({cfg.prior_heads})")
    if cfg.fid_samples < 2:
        raise ConfigError(f"--fid-samples must be >= 2, got {cfg.fid_samples}")


# ------------------------------------------------------------------------------ the model


def init_codebook(key, num_codes: int, dim: int):
    """dm-haiku's initializer for its VQ embeddings: uniform variance scaling, fan-in = D."""
    import jax

    limit = (3.0 / dim) ** 0.5
    return jax.random.uniform(key, (num_codes, dim), minval=-limit, maxval=limit)


def build(cfg: Config, image_shape, codebook: str, beta: float, data_variance: float,
          dtype: str = "float32") -> Built:
    """The `Autoencoder` (`model`), `init(key) -> TrainState` and the step
    `(state, batch, axis_name=None) -> (state, metrics)` of one variant.

    "loss": params {"encoder", "decoder", "codebook"}, loss = recon + vq_loss(z, e, beta).
    "ema": params {"encoder", "decoder"}, extras {"codebook": EmaCodebook}, loss = recon +
    beta * commitment_loss(z, e); after the gradient step the codebook gets `vq.ema_update`
    from this step's latents and assignments (summed over devices under pmap).
    "ema_rotation" / "loss_rotation": as "ema" / "loss", the decoder's input `vq.rotation_trick(z, e)`
    instead of the straight-through `z + sg[e - z]`.
    "rvq": `vq.residual_quantize` over `rvq_levels` stacked EMA codebooks (`vq.residual_ema_update`),
    loss = recon + beta * commitment_loss(z, sum of the levels' codes).
    "fsq": `vq.fsq(z, levels)` (no codebook, no latent loss; the encoder outputs len(levels) channels).
    "lfq": `vq.lfq(z)` over log2 K channels, loss = recon + beta * commitment_loss(z, sign(z)) +
    lfq_entropy_weight * `vq.lfq_entropy_penalty(z, lfq_temperature)`.
    With `dtype="bfloat16"` the step's encoder and decoder run in bfloat16
    (`genjax.train.mixed_precision`); the latents come back in float32, so the quantizer, the
    codebook and its EMA statistics, the losses, gradients and master weights stay float32.

    The metrics: loss, recon_mse, perplexity and codes_used of the batch, and `code_counts` [size],
    each index value's uses in the batch (its mean over a logged chunk is 0 exactly for the codes
    unused in the whole chunk: the dead codes).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import train, vq

    quantizer = quantizer_of(cfg, codebook)
    model = Autoencoder(quantizer.dim, tuple(cfg.channels), cfg.res_blocks, cfg.res_hidden, image_shape[-1])
    tx = optax.adam(cfg.learning_rate)
    k = cfg.num_codes
    size = codebook_size(cfg, codebook)
    ema, loss_book, rvq = codebook in EMA_CODEBOOKS, codebook in LOSS_CODEBOOKS, codebook == "rvq"
    rotation = codebook.endswith("_rotation")
    encode, decode = train.mixed_precision(model.encode, dtype), train.mixed_precision(model.decode, dtype)

    def init(key):
        params = model.init(key, image_shape)
        extras = {}
        if ema or loss_book:
            initial_codebook = init_codebook(jax.random.fold_in(key, 2), k, cfg.latent_dim)
            if ema:
                extras = {"codebook": vq.ema_init(initial_codebook)}
            else:
                params["codebook"] = initial_codebook
        elif rvq:
            q, per_level = quantizer.levels
            books = jnp.stack([init_codebook(jax.random.fold_in(jax.random.fold_in(key, 2), i), per_level,
                                             cfg.latent_dim) for i in range(q)])  # [Q, k, D]
            extras = {"codebook": jax.vmap(vq.ema_init)(books)}
        return train.TrainState.create(params=params, tx=tx, key=jax.random.fold_in(key, 3), extras=extras)

    def step(state, batch, axis_name=None):
        x = batch["image"].astype(jnp.float32) / 255.0  # [B, H, W, C]

        def loss_fn(params):
            z = encode(params, x)  # [B, h, w, D]
            levels = None
            if ema or loss_book:
                book = state.extras["codebook"].codebook if ema else params["codebook"]  # [K, D]
                z_q, idx = vq.quantize(z, book)  # [B, h, w, D], [B, h, w]
                e_k = vq.lookup(book, idx)
                if rotation:
                    z_q = vq.rotation_trick(z, e_k)
                latent = beta * vq.commitment_loss(z, e_k) if ema else vq.vq_loss(z, e_k, beta)
            elif rvq:
                books = state.extras["codebook"].codebook  # [Q, k, D]
                z_q, levels = vq.residual_quantize(z, books)  # [B, h, w, D], [B, h, w, Q]
                radix = jnp.asarray([books.shape[1] ** i for i in range(books.shape[0])], jnp.int32)
                idx = jnp.sum(levels * radix, axis=-1)
                latent = beta * vq.commitment_loss(z, z_q)
            elif codebook == "fsq":
                z_q, idx = vq.fsq(z, quantizer.levels)
                latent = jnp.zeros((), jnp.float32)
            else:  # lfq
                z_q, idx = vq.lfq(z)
                penalty, _, _ = vq.lfq_entropy_penalty(z, cfg.lfq_temperature, axis_name=axis_name)
                latent = beta * vq.commitment_loss(z, z_q) + cfg.lfq_entropy_weight * penalty
            mse = jnp.mean((decode(params, z_q) - x) ** 2)
            return mse / data_variance + latent, (z, idx, levels, mse)

        (loss, (z, idx, levels, mse)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = train.pmean_if(grads, axis_name)
        extras = {}
        if ema:
            book = vq.ema_update(state.extras["codebook"], z, idx, cfg.decay, cfg.epsilon, axis_name=axis_name)
            if cfg.restart_threshold > 0:
                book = vq.restart_dead_codes(state.step_key(), book, z, cfg.restart_threshold, axis_name=axis_name)
            extras["codebook"] = book
        elif rvq:
            extras["codebook"] = vq.residual_ema_update(state.extras["codebook"], z, levels, cfg.decay, cfg.epsilon,
                                                        axis_name=axis_name)
        usage = vq.codebook_usage(idx, size, axis_name=axis_name)  # [size]
        metrics = {
            **train.pmean_if({"loss": loss, "recon_mse": mse}, axis_name),
            "perplexity": vq.perplexity(idx, size, axis_name=axis_name),  # over the whole (global) batch
            "codes_used": jnp.sum(usage > 0),
            "code_counts": usage,
        }
        return state.apply_gradients(grads, extras=extras), metrics

    return Built(model=model, init=init, step=step)


def codebook_of(state, codebook: str):
    """A variant's codebook array: [K, D] ("ema", "loss", rotations), [Q, k, D] ("rvq"), None (FSQ, LFQ)."""
    if codebook in EMA_CODEBOOKS or codebook == "rvq":
        return state.extras["codebook"].codebook
    return state.params["codebook"] if codebook in LOSS_CODEBOOKS else None


def dead_codes(history: list[dict]) -> list[tuple[int, int]]:
    """(step, codes unused in the logged chunk ending there) of a variant's metrics.jsonl records."""
    import numpy as np

    return [(r["step"], int(np.sum(np.asarray(r["code_counts"]) == 0))) for r in history if "code_counts" in r]


def make_evaluator(model: Autoencoder, images, num_codes: int, batch_size: int = 500, quantizer: Quantizer | None = None):
    """`(params, codebook) -> dict` over a whole split: reconstruction MSE of the clipped
    reconstructions, perplexity and number of codes used, code usage counts [num_codes] (the
    quantizer's index values: FSQ/LFQ their implicit codebooks, RVQ the level combinations)."""
    import jax.numpy as jnp
    import numpy as np

    from genjax import train, vq

    quantizer = quantizer or Quantizer("vq", (), model.latent_dim)

    @train.jit
    def run(params, codebook, x):
        x = x.astype(jnp.float32) / 255.0
        z = model.encode(params, x)
        z_q, idx = quantizer.quantize(z, codebook)
        x_hat = jnp.clip(model.decode(params, z_q), 0.0, 1.0)
        return jnp.mean((x_hat - x) ** 2, axis=(1, 2, 3)), idx  # [B], [B, h, w]

    def evaluate(params, codebook):
        errs, idx = train.map_batched(lambda x: run(params, codebook, x), images, batch_size=batch_size)
        counts = np.bincount(idx.reshape(-1), minlength=num_codes)
        return {
            "recon_mse": float(np.mean(errs)),
            "perplexity": float(vq.perplexity(jnp.asarray(idx), num_codes)),
            "codes_used": int(np.sum(counts > 0)),
            "usage": counts,
        }

    return evaluate


# ------------------------------------------------------------------------------ latent statistics


def latent_statistics(model: Autoencoder, params, codebook, images, batch_size: int = 500,
                      quantizer: Quantizer | None = None) -> dict:
    """Mean and std over all entries of the training set's continuous and quantized latents
    (every image; the per-image sums added up in float64), in the saved autoencoder's latent
    space (`Quantizer.latent`, `Quantizer.snap`: FSQ's bounded latents and their grid points)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import train

    quantizer = quantizer or Quantizer("vq", (), model.latent_dim)

    @train.jit
    def moments(x):  # [B, 4]: each image's sums of z, z^2, z_q, z_q^2 over its latent entries
        z = quantizer.latent(model.encode(params, x.astype(jnp.float32) / 255.0))
        z_q, _ = quantizer.snap(z, codebook)
        axes = tuple(range(1, z.ndim))
        return jnp.stack([jnp.sum(z, axes), jnp.sum(z**2, axes), jnp.sum(z_q, axes), jnp.sum(z_q**2, axes)], 1)

    sums = train.map_batched(moments, images, batch_size=min(batch_size, len(images)))
    total = sums.astype(np.float64).sum(axis=0)
    latent = jax.eval_shape(lambda x: model.encode(params, x), jax.ShapeDtypeStruct((1, *images.shape[1:]), jnp.float32))
    n = len(images) * int(np.prod(latent.shape[1:]))  # latent entries
    mean, mean_q = total[0] / n, total[2] / n
    return {
        "latent_mean": float(mean),
        "latent_std": float(np.sqrt(max(total[1] / n - mean**2, 0.0))),
        "quantized_latent_mean": float(mean_q),
        "quantized_latent_std": float(np.sqrt(max(total[3] / n - mean_q**2, 0.0))),
    }


# ------------------------------------------------------------------------------ the prior over the codes


def code_grids(model: Autoencoder, params, codebook, images, batch_size: int = 500,
               quantizer: Quantizer | None = None):
    """The nearest-code indices of every image: uint8 [N, H, W, C] -> int32 [N, h * w] (raster order)."""
    import jax.numpy as jnp

    from genjax import train

    quantizer = quantizer or Quantizer("vq", (), model.latent_dim)

    @train.jit
    def codes(x):
        idx = quantizer.quantize(model.encode(params, x.astype(jnp.float32) / 255.0), codebook)[1]  # [B, h, w]
        return idx.reshape(idx.shape[0], -1).astype(jnp.int32)

    return train.map_batched(codes, images, batch_size=min(batch_size, len(images)))


def reconstruct(model: Autoencoder, params, codebook, images, batch_size: int = 500,
                quantizer: Quantizer | None = None):
    """Decoded nearest codes of uint8 images [N, H, W, C]: float32 [N, H, W, C] in [0, 1]."""
    import jax.numpy as jnp

    from genjax import train

    quantizer = quantizer or Quantizer("vq", (), model.latent_dim)

    @train.jit
    def run(x):
        z_q, _ = quantizer.quantize(model.encode(params, x.astype(jnp.float32) / 255.0), codebook)
        return jnp.clip(model.decode(params, z_q), 0.0, 1.0)

    return train.map_batched(run, images, batch_size=min(batch_size, len(images)))


def build_prior(cfg: Config, num_codes: int, length: int) -> Built:
    """The code prior (`genjax.nn.CodePrior`, `model`), `init(key) -> TrainState` and its step
    on batches `{"codes": int [B, L]}`: Adam on the mean next-code cross-entropy (nats per code,
    with `prior_dropout` applied, its mask drawn from the step's key),
    the learning rate warmed up linearly over min(200, steps / 10) steps, then cosine-decayed to a
    tenth. `loss_fn(params, codes) -> [B]` is the negative log-likelihood of each grid (nats)."""
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import nn, train

    prior = nn.CodePrior(num_codes=num_codes, length=length, width=cfg.prior_width, num_layers=cfg.prior_layers,
                         num_heads=cfg.prior_heads, dropout=cfg.prior_dropout)
    warmup = min(200, max(cfg.prior_steps // 10, 1))
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.prior_learning_rate, warmup, max(cfg.prior_steps, warmup + 1),
                                            end_value=0.1 * cfg.prior_learning_rate)
    tx = optax.adamw(lr, weight_decay=cfg.prior_weight_decay) if cfg.prior_weight_decay > 0 else optax.adam(lr)

    def nll(params, codes):  # [B, L] -> [B]
        return jnp.sum(nn.cross_entropy_loss(prior.apply({"params": params}, codes), codes), axis=1)

    def init(key):
        params = jax.jit(prior.init)(jax.random.fold_in(key, 0), jnp.zeros((1, length), jnp.int32))["params"]
        return train.TrainState.create(params=params, tx=tx, key=jax.random.fold_in(key, 1))

    def loss(params, batch, key, state):  # dropout (if any) in training only: `nll` is deterministic
        codes = batch["codes"]
        logits = prior.apply({"params": params}, codes, deterministic=False, rngs={"dropout": key})
        return jnp.mean(jnp.sum(nn.cross_entropy_loss(logits, codes), axis=1)) / length, ({}, {})

    return Built(model=prior, init=init, step=train.make_train_step(loss), loss_fn=nll)


def train_prior(ctx: Context, cfg: Config, model: Autoencoder, params, codebook, autoencoder_digest: str, train_ds,
                test_ds, key, quantizer: Quantizer | None = None) -> dict:
    """Trains the code prior on the training digits' codes (subdirectory `prior/`, checkpoints
    and exact resume as every variant), evaluates it on the held-out codes and samples it.
    `prior/autoencoder_digest.txt` names the autoencoder it was trained for: a prior of another
    one (a run resumed with more `--steps`) is removed and trained again.

    Returns a dict: `state`, `model`, `seconds` (training), the held-out NLL in nats per image
    of the prior and of the two baselines (uniform codes, code frequencies), `samples` (float32
    [fid_samples, H, W, C] in [0, 1]), `codes` ([fid_samples, h, w]) and `sample_seconds`
    (sampling and decoding them, compiled ahead of time)."""
    import shutil

    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import data, nn, report, train, vq

    stamp = ctx.workdir / "prior" / "autoencoder_digest.txt"
    if ctx.is_main_process:
        if stamp.exists() and stamp.read_text().strip() != autoencoder_digest:
            ctx.log("the saved autoencoder is not the one the code prior was trained for: training the prior again")
            shutil.rmtree(stamp.parent)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(autoencoder_digest + "\n")
    quantizer = quantizer or Quantizer("vq", (), model.latent_dim)
    num_codes = cfg.num_codes if quantizer.kind == "vq" else quantizer.num_codes
    codes = code_grids(model, params, codebook, np.concatenate([train_ds.images, test_ds.images]),
                       quantizer=quantizer)  # [N, L]
    train_codes, test_codes = codes[: len(train_ds.images)], codes[len(train_ds.images):]
    length = train_codes.shape[1]
    built = build_prior(cfg, num_codes, length)
    heldout_nll = train.jit(built.loss_fn)

    def eval_fn(s):
        per_image = train.map_batched(lambda c: heldout_nll(s.params, c), test_codes, batch_size=500)
        return {"heldout_nll": float(np.mean(per_image))}

    loader = data.ArrayLoader({"codes": train_codes}, cfg.prior_batch_size, cfg.seed,
                              process_index=jax.process_index(), process_count=jax.process_count())
    ctx.log(f"training the code prior (Transformer, width {cfg.prior_width}, {cfg.prior_layers} block(s)) on "
            f"{len(train_codes)} code grids")
    fit = ctx.fit(built.init(jax.random.fold_in(key, 17)), built.step, loader, subdir="prior",
                  num_steps=cfg.prior_steps, eval_fn=eval_fn, eval_every=cfg.eval_every)
    log_path = ctx.workdir / "prior" / "metrics.jsonl"
    last = (report.read_jsonl(log_path) if log_path.exists() else [{}])[-1]  # fit evaluates its last chunk
    nll = (last["eval/heldout_nll"] if "eval/heldout_nll" in last and last.get("step") == int(fit.state.step)
           else eval_fn(fit.state)["heldout_nll"])
    counts = np.bincount(train_codes.reshape(-1), minlength=num_codes) + 1.0  # Laplace-smoothed
    log_freq = np.log(counts / counts.sum())
    h, w = train_ds.image_shape[0] // 4, train_ds.image_shape[1] // 4  # the code grid
    n = cfg.fid_samples

    vectors = quantizer.codebook(codebook)  # [num_codes, D]: every index's code

    def generate(args, key):  # one program: L prior steps, the codebook lookup, the decoder
        prior_params, ae_params, book = args
        grid = nn.sample_codes(key, built.model, prior_params, n).reshape(n, h, w)
        return jnp.clip(model.decode(ae_params, vq.lookup(book, grid)), 0.0, 1.0), grid

    ((samples, grids),), seconds = train.time_compiled(
        generate, [((fit.state.params, params, vectors), jax.random.fold_in(key, 18))])
    return {
        "state": fit.state, "model": built.model, "steps": int(fit.state.step), "resumed_from": fit.resumed_from,
        "seconds": fit_seconds(fit, log_path),
        "heldout_nll": nll, "uniform_nll": length * float(np.log(num_codes)), "num_codes": num_codes,
        "frequency_nll": float(-np.mean(log_freq[test_codes].sum(axis=1))),
        "num_parameters": int(sum(np.size(x) for x in jax.tree.leaves(fit.state.params))),
        "samples": np.asarray(samples, np.float32), "codes": np.asarray(grids), "sample_seconds": seconds,
    }


# ------------------------------------------------------------------------------ the run


def run(ctx: Context) -> dict:
    import jax
    import numpy as np

    from genjax import data, report, train

    cfg: Config = ctx.config
    check_config(cfg)
    train_ds = data.load_images(cfg.dataset, "train", source=cfg.data_source, data_dir=cfg.data_dir)
    test_ds = data.load_images(cfg.dataset, "test", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"data: {train_ds.description} ({train_ds.num_examples} train / {test_ds.num_examples} test)")
    image_shape = train_ds.image_shape
    data_variance = float(np.var(train_ds.images.astype(np.float64) / 255.0))
    loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                           process_index=jax.process_index(), process_count=jax.process_count())
    key = jax.random.key(cfg.seed)

    h, w, _ = image_shape
    results: dict[str, dict[str, Any]] = {}
    states: dict[str, Any] = {}
    models: dict[str, Autoencoder] = {}
    for codebook, beta in variants_of(cfg):
        name = variant_name(codebook, beta)
        built = build(cfg, image_shape, codebook, beta, data_variance)
        models[name] = built.model
        size = codebook_size(cfg, codebook)
        evaluate = make_evaluator(built.model, test_ds.images, size, quantizer=quantizer_of(cfg, codebook))

        def eval_fn(s, codebook=codebook):
            out = evaluate(s.params, codebook_of(s, codebook))
            return {k: v for k, v in out.items() if k != "usage"}

        ctx.log(f"training {name} ({CODEBOOK_LABELS[codebook]}, beta={beta:g})")
        fit = ctx.fit(built.init(key), built.step, loader, subdir=name, eval_fn=eval_fn, eval_every=cfg.eval_every)
        state = fit.state
        ev = evaluate(state.params, codebook_of(state, codebook))
        states[name] = state
        history = report.read_jsonl(ctx.workdir / name / "metrics.jsonl")
        dead = dead_codes(history)
        results[name] = {
            "codebook": codebook,
            "beta": beta,
            "num_codes": size,
            "bits_per_position": float(np.log2(size)),
            "bits_per_image": float((h // 4) * (w // 4) * np.log2(size)),
            "recon_mse": ev["recon_mse"],
            "perplexity": ev["perplexity"],
            "codes_used": ev["codes_used"],
            "usage": ev["usage"],
            "dead_codes": dead[-1][1] if dead else None,  # unused in the last logged chunk of training
            "dead_codes_history": dead,
            "steps": int(state.step),
            # from the variant's whole log, so that a resumed run reports the speed of all its chunks
            "steps_per_s": train.steps_per_second(history),
            "train_seconds": fit_seconds(fit, ctx.workdir / name / "metrics.jsonl"),
            "resumed_from": fit.resumed_from,
        }
        if fit.history:  # trained in this call (a finished variant that is only re-evaluated logs nothing)
            ctx.metrics.write({"variant": name, **{k: v for k, v in results[name].items()
                                                   if k not in ("usage", "dead_codes_history")}})
        ctx.log(f"{name}: held-out recon MSE {ev['recon_mse']:.4f}, perplexity {ev['perplexity']:.1f}, "
                f"codes used {ev['codes_used']}/{size}, dead codes in the last interval {results[name]['dead_codes']}")

    # the autoencoder for latent diffusion ---------------------------------------------------
    main_codebook = cfg.main_quantizer
    main = variant_name(main_codebook, cfg.main_beta)
    main_state, model, main_quantizer = states[main], models[main], quantizer_of(cfg, main_codebook)
    main_book = codebook_of(main_state, main_codebook)
    saved_book = main_quantizer.codebook(main_book)  # [num_codes, D]: FSQ/LFQ their implicit codebooks
    stats = latent_statistics(model, main_state.params, saved_book, train_ds.images, quantizer=main_quantizer)
    info = {
        "variant": main,
        "codebook_update": main_codebook,
        "quantizer": main_quantizer.config(),
        "beta": cfg.main_beta,
        "num_codes": codebook_size(cfg, main_codebook),
        "image_shape": list(image_shape),
        "latent_shape": [h // 4, w // 4, main_quantizer.dim],
        "input": "images in [0, 1], centred as x - 0.5 before the encoder; decoder output + 0.5",
        "steps": int(main_state.step),
        "dataset": train_ds.as_dict(),
        "data_variance": data_variance,
        **stats,
        "held_out": {k: results[main][k] for k in ("recon_mse", "perplexity", "codes_used")},
        "params_digest": train.params_digest({"params": main_state.params, "codebook": saved_book}),
        "train_seconds": results[main]["train_seconds"],  # the latent models' closing-comparison cost
    }
    if ctx.is_main_process:
        save_autoencoder(ctx.workdir, model, main_state.params, saved_book, info)

    # generation: the code prior's samples, decoded, scored by MNIST-feature FID/KID -----------
    prior = train_prior(ctx, cfg, model, main_state.params, main_book, info["params_digest"], train_ds, test_ds, key,
                        quantizer=main_quantizer)
    evaluator = mnist_evaluator(ctx, data_source=cfg.data_source, data_dir=cfg.data_dir)
    recon = reconstruct(model, main_state.params, main_book, train_ds.images[: cfg.fid_samples],
                        quantizer=main_quantizer)
    scores = {}
    for label, images in (("prior", prior["samples"]), ("reconstructions", recon)):
        scores[label] = evaluator.scores(images)
    n = len(prior["samples"])
    ae_seconds = results[main]["train_seconds"]
    generator = generator_record(
        "VQ-VAE + prior", fid=scores["prior"]["fid"], kid=scores["prior"]["kid"],
        train_seconds=ae_seconds + prior["seconds"], seconds_per_1000=prior["sample_seconds"] / n * 1000,
        real_fid=evaluator.real_fid, num_samples=n, samples="samples.npy", scores=scores["prior"],
        note=f"training: the VQ-VAE {main} ({ae_seconds:.0f} s, {results[main]['steps']} steps) + the Transformer "
             f"code prior ({prior['seconds']:.0f} s, {prior['steps']} steps); sampling: {prior['codes'][0].size} "
             f"prior steps (key-value cache) then the decoder, {n} at once")
    ctx.log(f"VQ-VAE + prior: FID {scores['prior']['fid']:.2f} (real digits {evaluator.real_fid:.2f}, "
            f"reconstructions {scores['reconstructions']['fid']:.2f}), held-out code NLL {prior['heldout_nll']:.1f} "
            f"nats, {generator['seconds_per_1000']:.2f} s / 1000 samples")
    if ctx.is_main_process:
        np.save(ctx.workdir / "samples.npy", prior["samples"][:64])  # [64, H, W, C] in [0, 1]
    digest = train.params_digest({**{n: {"params": s.params, "extras": s.extras} for n, s in states.items()},
                                  "prior": prior["state"].params})

    write_report(ctx, cfg, models, states, results, main, train_ds, test_ds, data_variance)
    write_prior_report(ctx, cfg, prior, scores, generator, main)
    return {
        "recon_mse": results[main]["recon_mse"],
        "perplexity": results[main]["perplexity"],
        "codes_used": results[main]["codes_used"],
        "num_codes": info["num_codes"],
        "main_variant": main,
        "steps": results[main]["steps"],
        "params_digest": digest,
        "variants": {n: {k: v for k, v in r.items() if k != "usage"} for n, r in results.items()},
        "target": target_check(cfg, results),
        "autoencoder": {"params": AUTOENCODER_PARAMS, "config": AUTOENCODER_CONFIG, **stats},
        "data_variance": data_variance,
        "dataset": train_ds.as_dict(),
        "test_dataset": test_ds.as_dict(),
        "prior": {"steps": prior["steps"], "heldout_nll": prior["heldout_nll"], "uniform_nll": prior["uniform_nll"],
                  "frequency_nll": prior["frequency_nll"], "num_parameters": prior["num_parameters"],
                  "train_seconds": prior["seconds"], "resumed_from": prior["resumed_from"]},
        "fid": scores["prior"]["fid"],
        "kid": scores["prior"]["kid"],
        "kid_std": scores["prior"]["kid_std"],
        "reconstruction_fid": scores["reconstructions"]["fid"],
        "real_fid": evaluator.real_fid,
        "samples": "samples.npy",
        "generators": [generator],
    }


def target_check(cfg: Config, results: dict) -> dict:
    """The issue's target, measured: does the rotation trick / FSQ use >= 95 % of its codes with a
    held-out MSE no worse than the EMA codebook's at the same beta? {variant: {...}} (empty
    without an EMA row at main_beta)."""
    ema = results.get(variant_name("ema", cfg.main_beta))
    if ema is None:
        return {}
    out = {}
    for name, r in results.items():
        if r["codebook"] in ("fsq", "ema_rotation", "loss_rotation"):
            used = r["codes_used"] / r["num_codes"]
            out[name] = {"fraction_used": used, "mse_vs_ema": r["recon_mse"] / ema["recon_mse"],
                         "met": bool(used >= 0.95 and r["recon_mse"] <= ema["recon_mse"])}
    return out


def write_report(ctx: Context, cfg: Config, models: dict, states, results, main, train_ds, test_ds,
                 data_variance) -> None:
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import report

    rep = ctx.report
    k = cfg.num_codes
    rep.text(
        f"Data: {train_ds.description}; evaluated on {test_ds.description}. Model: convolutional VQ-VAE, "
        f"28x28 -> 7x7 x {cfg.latent_dim} latents, K = {k} codes, widths {tuple(cfg.channels)}, "
        f"{cfg.res_blocks} residual block(s). Adam {cfg.learning_rate:g}, batch {cfg.batch_size}, "
        f"{cfg.steps} steps per variant, all variants from the same initial weights on the same batches. "
        f"Loss: MSE / data variance ({data_variance:.4f}) + latent loss. EMA: decay {cfg.decay:g}, "
        f"epsilon {cfg.epsilon:g}" + (f", dead codes restarted below {cfg.restart_threshold:g} per batch"
                                        if cfg.restart_threshold > 0 else ", no restarts") + "."
    )

    # table ---------------------------------------------------------------------------------
    def describe(codebook):
        q = quantizer_of(cfg, codebook)
        if q.kind == "fsq":
            return f"levels {q.levels}, d = {q.dim}"
        if q.kind == "lfq":
            return f"{q.dim} bits"
        if q.kind == "rvq":
            return f"{q.levels[0]} x {q.levels[1]} codes, D = {q.dim}"
        return f"K = {k}, D = {q.dim}"

    rows = [(CODEBOOK_LABELS[r["codebook"]], "-" if r["codebook"] == "fsq" else f"{r['beta']:g}",
             describe(r["codebook"]), f"{r['bits_per_position']:.2f} / {r['bits_per_image']:.0f}", r["recon_mse"],
             r["perplexity"], f"{r['codes_used']} / {r['num_codes']}",
             "-" if r["dead_codes"] is None else f"{r['dead_codes']} / {r['num_codes']}", r["steps"],
             r["steps_per_s"]) for r in results.values()]
    rep.table(["quantizer", "beta", "codebook", "bits per position / image", "held-out recon MSE", "perplexity",
               "codes used", "dead codes (last interval)", "steps", "steps/s"], rows,
              caption="held-out reconstruction error (per pixel, images in [0, 1]), perplexity of the code "
                      "distribution and number of distinct codes used (of the quantizer's index values: FSQ/LFQ "
                      "their implicit codebooks, residual VQ the combinations of its levels' codes), and the codes "
                      f"unused by the training batches of the last logged interval ({cfg.log_every} steps), per "
                      "variant; bits per image = 7x7 positions x log2(codebook size)")
    target = target_check(cfg, results)
    if target:
        rep.text("Target (>= 95 % of the codes used, held-out MSE no worse than the EMA codebook's at beta "
                 f"{cfg.main_beta:g}): " + "; ".join(
                     f"{n}: {t['fraction_used']:.0%} used, MSE x{t['mse_vs_ema']:.2f} of EMA's, "
                     f"{'met' if t['met'] else 'not met'}" for n, t in target.items()) + ".")

    # reconstructions ------------------------------------------------------------------------
    n = 12
    x = test_ds.images[:n]
    shown = [(r["codebook"], name) for name, r in results.items() if r["beta"] == cfg.main_beta]
    if len(shown) > 4:  # the codebook variants at main_beta first, the main variant always
        shown = [s for s in shown if s[1] == main] + [s for s in shown if s[1] != main][:3]
    fig, axes = plt.subplots(1 + 2 * len(shown), n, figsize=(n * 0.9, (1 + 2 * len(shown)) * 1.0))
    axes = np.atleast_2d(axes)
    for j in range(n):
        axes[0, j].imshow(x[j, ..., 0], cmap="gray_r", vmin=0, vmax=255)
    axes[0, 0].set_title("original", fontsize=8, loc="left")
    for i, (codebook, name) in enumerate(shown):
        state, model = states[name], models[name]
        book = codebook_of(state, codebook)
        z = model.encode(state.params, jnp.asarray(x, jnp.float32) / 255.0)
        z_q, idx = quantizer_of(cfg, codebook).quantize(z, book)
        x_hat = np.asarray(jnp.clip(model.decode(state.params, z_q), 0, 1))
        idx = np.asarray(idx)
        for j in range(n):
            axes[1 + 2 * i, j].imshow(x_hat[j, ..., 0], cmap="gray_r", vmin=0, vmax=1)
            axes[2 + 2 * i, j].imshow(idx[j], cmap="tab20", vmin=0, vmax=results[name]["num_codes"] - 1)
        axes[1 + 2 * i, 0].set_title(f"{CODEBOOK_LABELS[codebook]} (beta {cfg.main_beta:g}): reconstruction",
                                     fontsize=8, loc="left")
        axes[2 + 2 * i, 0].set_title("its 7x7 code indices", fontsize=8, loc="left")
    for ax in axes.ravel():
        ax.axis("off")
    rep.figure(fig, "reconstructions",
               caption="held-out digits, their reconstructions from 49 discrete codes each "
                       f"(beta = {cfg.main_beta:g}), "
                       "and the code index maps")

    # codebook usage ---------------------------------------------------------------------------
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 3.2), squeeze=False)
    for ax, (codebook, name) in zip(axes[0], shown):
        r = results[name]
        counts = np.sort(r["usage"])[::-1]
        ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), width=1.0)
        ax.set_title(f"{CODEBOOK_LABELS[codebook]}, beta {r['beta']:g}: perplexity {r['perplexity']:.1f}, "
                     f"{r['codes_used']}/{r['num_codes']} codes used", fontsize=9)
        ax.set_xlabel("code (sorted by usage)")
        ax.set_ylabel("fraction of held-out latents")
    rep.figure(fig, "codebook_usage", caption="codebook usage histogram on the held-out digits")

    # training curves --------------------------------------------------------------------------
    colors = dict(zip(cfg.betas, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    others = plt.get_cmap("Dark2").colors
    styles = {"ema": "-", "loss": "--"}

    def line_style(i, r):  # the sweep: color by beta, style by codebook; the other quantizers: their own colors
        if r["codebook"] in styles:
            return dict(color=colors[r["beta"]], linestyle=styles[r["codebook"]])
        return dict(color=others[i % len(others)], linestyle=":")

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for i, (name, r) in enumerate(results.items()):
        history = report.read_jsonl(ctx.workdir / name / "metrics.jsonl")
        steps = [h["step"] for h in history]
        label = name
        kw = dict(**line_style(i, r), label=label)
        axes[0].plot(steps, [h["recon_mse"] for h in history], **kw)
        axes[1].plot(steps, [h["perplexity"] for h in history], **kw)
        ev = [(h["step"], h["eval/recon_mse"]) for h in history if "eval/recon_mse" in h]
        if ev:
            axes[2].plot(*zip(*ev), marker="o", **kw)
    axes[0].set_title("reconstruction MSE (training batches)")
    axes[0].set_yscale("log")
    axes[1].set_title(f"perplexity of the batch's codes (K = {k})")
    axes[2].set_title("held-out reconstruction MSE")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
    axes[1].legend(fontsize=7, ncol=2)
    rep.figure(fig, "training_curves",
               caption="reconstruction error and perplexity over training (solid: EMA codebook, dashed: codebook "
                       "loss, dotted: the other quantizers)")

    # dead codes -------------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (name, r) in enumerate(results.items()):
        if r["dead_codes_history"]:
            steps, dead = zip(*r["dead_codes_history"])
            ax.plot(steps, [d / r["num_codes"] for d in dead], marker=".", **line_style(i, r),
                    label=f"{name} (of {r['num_codes']})")
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of the codes unused")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    rep.figure(fig, "dead_codes", caption=f"dead codes over training: the fraction of each quantizer's codes that no "
                                          f"training latent used in a logged interval ({cfg.log_every} steps)")

    # beta sweep -----------------------------------------------------------------------------
    if len(cfg.betas) > 1:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
        for codebook in cfg.codebooks:
            rs = sorted((r for r in results.values() if r["codebook"] == codebook), key=lambda r: r["beta"])
            betas = [r["beta"] for r in rs]
            for ax, key in zip(axes, ("recon_mse", "perplexity", "codes_used")):
                ax.plot(betas, [r[key] for r in rs], "o" + styles[codebook], label=CODEBOOK_LABELS[codebook])
        for ax, title in zip(axes, ("held-out reconstruction MSE", "perplexity", f"codes used (of {k})")):
            ax.set_xscale("log")
            ax.set_xticks(cfg.betas)
            ax.set_xticklabels([f"{b:g}" for b in cfg.betas])
            ax.set_xlabel("beta (commitment weight)")
            ax.set_title(title)
        axes[0].set_ylim(0, None)
        axes[1].set_ylim(0, None)
        axes[2].set_ylim(0, k)
        axes[0].legend()
        rep.figure(fig, "beta_sweep", caption="the beta sweep: the paper reports results robust for beta in 0.1-2")
        by_codebook = {c: [r["recon_mse"] for r in results.values() if r["codebook"] == c] for c in cfg.codebooks}
        spread = ", ".join(f"{CODEBOOK_LABELS[c]}: {min(v):.4f}-{max(v):.4f} (max/min {max(v) / min(v):.2f})"
                           for c, v in by_codebook.items())
        rep.text(f"Held-out reconstruction MSE over the beta sweep: {spread}.")
    rep.text(f"Saved autoencoder: `{AUTOENCODER_PARAMS}` + `{AUTOENCODER_CONFIG}` ({main}); load it with "
             "`experiments.vqvae.load_autoencoder(workdir)`.")


def write_prior_report(ctx: Context, cfg: Config, prior: dict, scores: dict, generator: dict, main: str) -> None:
    """The report's generation section: the code prior's likelihood, the FID/KID table, the samples."""
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import report

    rep = ctx.report
    length = prior["codes"][0].size
    rep.heading("Generating: an autoregressive prior over the codes")
    rep.text(
        f"A VQ-VAE generates through a prior over its codes (van den Oord et al. 2017, section 3.2, with a "
        f"PixelCNN). Here: a causal Transformer (`genjax.nn.CodePrior`: {cfg.prior_layers} pre-LN blocks, width "
        f"{cfg.prior_width}, {cfg.prior_heads} heads, {prior['num_parameters']:,} parameters) over the {length} "
        f"codes of the {main} variant in raster order, trained for {prior['steps']:,} steps of batch "
        f"{cfg.prior_batch_size} (Adam {cfg.prior_learning_rate:g}, warm-up and cosine decay) on the training "
        f"digits' codes, then sampled ancestrally at temperature 1 (`genjax.nn.sample_codes`: one `lax.scan` over "
        f"the {length} positions with a key-value cache) and decoded.")
    rep.table(
        ["model of the held-out codes", "NLL (nats per image)", "bits per code"],
        [(label, v, v / length / np.log(2)) for label, v in (
            (f"uniform over the K = {prior['num_codes']} codes", prior["uniform_nll"]),
            ("code frequencies of the training grids (positions independent)", prior["frequency_nll"]),
            ("Transformer prior", prior["heldout_nll"]))],
        caption="negative log-likelihood of the held-out digits' code grids, lower is better",
    )
    rep.table(
        ["images", "MNIST-feature FID", "KID", "KID std", "training seconds", "seconds / 1000 samples"],
        [(f"VQ-VAE + prior: {len(prior['samples'])} samples", scores["prior"]["fid"], scores["prior"]["kid"],
          scores["prior"]["kid_std"], generator["train_seconds"], generator["seconds_per_1000"]),
         ("VQ-VAE reconstructions of training digits (a perfect prior)", scores["reconstructions"]["fid"],
          scores["reconstructions"]["kid"], scores["reconstructions"]["kid_std"], "-", "-"),
         ("real training digits (the floor)", generator["real_fid"], "-", "-", "-", "-")],
        caption="Frechet distance and KID between classifier features of these images and of the held-out "
                "digits (the classifier of `mnist_classifier`; comparable between the experiments of this suite, "
                "not with Inception FIDs). " + generator["note"][:1].upper() + generator["note"][1:] + ".",
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    axes[0].imshow(report.image_grid(prior["samples"][:64], cols=8, pad=1, fill=0.0), cmap="gray_r", vmin=0, vmax=1)
    axes[0].set_title("samples: prior codes, decoded", fontsize=9)
    code_grid = report.image_grid(prior["codes"][:64], cols=8, pad=1, fill=-1.0)
    axes[1].imshow(np.ma.masked_less(code_grid, 0), cmap="tab20", vmin=0, vmax=prior["num_codes"] - 1)
    axes[1].set_title("their 7x7 code grids", fontsize=9)
    for ax in axes:
        ax.axis("off")
    rep.figure(fig, "prior_samples", caption=f"64 of the {len(prior['samples'])} scored samples (temperature 1) "
                                             "and the code grids the prior drew for them")


EXPERIMENT = Experiment(
    name="vqvae",
    title="VQ-VAE on MNIST: straight-through quantization, EMA codebook vs codebook loss, beta sweep",
    description="A convolutional VQ-VAE with a 7x7 grid of discrete codes; its autoencoder serves latent diffusion.",
    config=Config,
    quick=QUICK,
    presets={"standard": STANDARD},
    run=run,
    trains=True,
    evaluation_fields=frozenset({"fid_samples"}),
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
