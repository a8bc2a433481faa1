"""The VQ-VAE autoencoder that `vqvae` trains and saves and `latent_diffusion` loads.

`Autoencoder` is the model (encoder and decoder modules and the pure functions around them);
`save_autoencoder(workdir, ...)` writes `autoencoder.msgpack` (parameters `{"encoder",
"decoder", "codebook"}`, flax msgpack, no pickle) and `autoencoder.json` (architecture and
statistics); `load_autoencoder(workdir)` returns jitted `encode` and `decode` functions and the
info (see `experiments/vqvae.py` for the whole interface). `Quantizer` is the quantizer between
the two (a learned codebook, residual VQ, FSQ or LFQ), as trained and as saved.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

AUTOENCODER_PARAMS = "autoencoder.msgpack"
AUTOENCODER_CONFIG = "autoencoder.json"
_FSQ_EPS = 1e-3  # genjax.vq.fsq's widening of the bound (vector-quantize-pytorch's FSQ.bound)


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """The quantizer between the encoder and the decoder, and its codebook of index values.

    kind "vq": nearest code of a learned codebook [K, D] (`book`); "rvq": `residual_quantize` with
    `levels` Q codebooks [Q, k, D] (`book`), the index of a position `sum_q i_q k^q` over the
    `k^Q` combinations; "fsq": `genjax.vq.fsq` with `levels` (no `book`); "lfq": `genjax.vq.lfq`
    over `{-1, +1}^dim` (no `book`).

    Two views of the same quantizer:
    - `quantize(z, book) -> (z_q, indices)`: on the encoder's raw output, with the library
      function the model was trained with (values; the caller adds its gradient estimator);
    - the saved autoencoder's latent space, `latent(z)` (the raw output for "vq"/"lfq"/"rvq"; FSQ's
      bounded value `bound(z) / floor(L / 2)`, in the grid's coordinates) and `snap(latent, book)`,
      so that `snap(latent(z)) == quantize(z)` and `snap` is idempotent on codebook vectors:
      `snap(codebook(book)[i]) == codebook(book)[i]`.
    """

    kind: str  # "vq" | "rvq" | "fsq" | "lfq"
    levels: tuple[int, ...] = ()  # fsq: levels per dimension; rvq: (Q, k)
    dim: int = 0  # the latent dimension at the quantizer

    @property
    def num_codes(self) -> int:
        if self.kind == "fsq":
            size = 1
            for level in self.levels:
                size *= level
            return size
        if self.kind == "lfq":
            return 2**self.dim
        if self.kind == "rvq":
            return self.levels[1] ** self.levels[0]
        raise ValueError(f"a 'vq' quantizer's number of codes is its codebook's, not {self!r}'s")

    def quantize(self, z, book):
        import jax.numpy as jnp

        from genjax import vq

        if self.kind == "vq":
            return vq.quantize(z, book)
        if self.kind == "fsq":
            return vq.fsq(z, self.levels)
        if self.kind == "lfq":
            return vq.lfq(z)
        z_q, idx = vq.residual_quantize(z, book)  # [..., D], [..., Q]
        radix = jnp.asarray([book.shape[1] ** q for q in range(book.shape[0])], jnp.int32)
        return z_q, jnp.sum(idx * radix, axis=-1).astype(jnp.int32)

    def latent(self, z):
        """The saved autoencoder's latents of raw encoder outputs (FSQ: vq.fsq's bound, scaled)."""
        import jax.numpy as jnp

        if self.kind != "fsq":
            return z
        lv = jnp.asarray(self.levels, jnp.float32)
        half_l = (lv - 1) * (1 + _FSQ_EPS) / 2
        offset = jnp.where(lv % 2 == 0, 0.5, 0.0)
        bounded = jnp.tanh(z.astype(jnp.float32) + jnp.arctanh(offset / half_l)) * half_l - offset
        return (bounded / jnp.asarray([level // 2 for level in self.levels], jnp.float32)).astype(z.dtype)

    def snap(self, z, book):
        """Latents -> (their codes [..., D], indices [...]) (FSQ: rounded to the grid)."""
        from genjax import vq

        if self.kind == "fsq":
            idx = vq.fsq_codes_to_indices(z, self.levels)
            return vq.fsq_indices_to_codes(idx, self.levels).astype(z.dtype), idx
        return self.quantize(z, book)

    def codebook(self, book):
        """Every index's code vector, [num_codes, D] (FSQ/LFQ: the implicit codebook; RVQ: the sums)."""
        import jax.numpy as jnp

        from genjax import vq

        if self.kind == "vq":
            return jnp.asarray(book)
        idx = jnp.arange(self.num_codes, dtype=jnp.int32)
        if self.kind == "fsq":
            return vq.fsq_indices_to_codes(idx, self.levels)
        if self.kind == "lfq":
            return vq.lfq_indices_to_codes(idx, self.dim)
        q, k = book.shape[0], book.shape[1]
        return sum(book[level][(idx // k**level) % k] for level in range(q))

    def config(self) -> dict:
        return {"kind": self.kind, "levels": list(self.levels), "dim": self.dim}

    @classmethod
    def from_config(cls, config: dict | None, dim: int) -> "Quantizer":
        if not config:  # saved before quantizers were recorded: a learned codebook
            return cls("vq", (), dim)
        return cls(config["kind"], tuple(config.get("levels", ())), int(config.get("dim", dim)))


@dataclasses.dataclass(frozen=True)
class Autoencoder:
    """The encoder and decoder modules and the pure functions around them.

    `encode(params, x)`: images in [0, 1] [B, H, W, C] -> latents [B, H/4, W/4, D];
    `decode(params, z)`: latents -> images (unclipped; ~[0, 1]). The inputs are centred
    (x - 0.5) before the encoder and the decoder's output is shifted back by 0.5.
    """

    latent_dim: int
    channels: tuple[int, ...]
    res_blocks: int
    res_hidden: int
    out_channels: int

    @property
    def encoder(self):
        from genjax.nn import VQVAEEncoder

        return VQVAEEncoder(self.latent_dim, tuple(self.channels), self.res_blocks, self.res_hidden)

    @property
    def decoder(self):
        from genjax.nn import VQVAEDecoder

        return VQVAEDecoder(self.out_channels, tuple(self.channels), self.res_blocks, self.res_hidden)

    def init(self, key, image_shape) -> dict:
        import jax
        import jax.numpy as jnp

        h, w, _ = image_shape
        enc = self.encoder.init(jax.random.fold_in(key, 0), jnp.zeros((1, *image_shape)))["params"]
        dec = self.decoder.init(jax.random.fold_in(key, 1), jnp.zeros((1, h // 4, w // 4, self.latent_dim)))["params"]
        return {"encoder": enc, "decoder": dec}

    def encode(self, params, x):
        return self.encoder.apply({"params": params["encoder"]}, x - 0.5)

    def decode(self, params, z):
        return self.decoder.apply({"params": params["decoder"]}, z) + 0.5

    def config(self) -> dict:
        return {"latent_dim": self.latent_dim, "channels": list(self.channels), "res_blocks": self.res_blocks,
                "res_hidden": self.res_hidden, "out_channels": self.out_channels}


def save_autoencoder(workdir, model: Autoencoder, params, codebook, info: dict) -> None:
    """Writes `autoencoder.msgpack` ({"encoder", "decoder", "codebook"}) and `autoencoder.json`."""
    from genjax import report, train

    workdir = Path(workdir)
    train.save_params(workdir / AUTOENCODER_PARAMS,
                      {"encoder": params["encoder"], "decoder": params["decoder"], "codebook": codebook})
    report.write_json(workdir / AUTOENCODER_CONFIG, {"architecture": model.config(), **info})


def load_autoencoder(workdir):
    """The trained VQ-VAE autoencoder of a run directory: `(encode, decode, info)`.

    - `encode(images) -> (z, indices)`: images uint8 [B, H, W, C] (0..255) or floats in [0, 1]
      -> continuous pre-quantization latents `z` [B, H/4, W/4, D] float32 and their nearest
      codes `indices` [B, H/4, W/4] int32.
    - `decode(z, quantize=True) -> images` [B, H, W, C] float32 in [0, 1]; with `quantize` the
      latents are first snapped to their nearest codes (the decoder was trained on quantized
      latents), otherwise decoded as given. For an FSQ autoencoder (`info["quantizer"]["kind"]
      == "fsq"`) the latents are FSQ's bounded values `bound(z) / floor(L / 2)` (each dimension
      in about [-1, 1]) and snapping rounds them to the FSQ grid; LFQ snaps to the signs.
    - `info`: the contents of `autoencoder.json` (architecture, `num_codes`, `image_shape`,
      `latent_shape`, `latent_mean`/`latent_std` of the training latents, held-out metrics, ...)
      plus `"codebook"`, the [K, D] float32 numpy array (FSQ/LFQ: the implicit codebook, every
      index's code) and `"quantizer"` (`{"kind": "vq" | "fsq" | "lfq", "levels", "dim"}`).

    Raises:
      FileNotFoundError: the run directory holds no saved autoencoder (run the experiment).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import report, train

    workdir = Path(workdir)
    config_path, params_path = workdir / AUTOENCODER_CONFIG, workdir / AUTOENCODER_PARAMS
    if not config_path.exists() or not params_path.exists():
        raise FileNotFoundError(
            f"no trained VQ-VAE autoencoder in {workdir} (expected {AUTOENCODER_PARAMS} and {AUTOENCODER_CONFIG}); "
            f"run `python -m experiments.vqvae --workdir {workdir}` first"
        )
    info = report.read_json(config_path)
    arch = info["architecture"]
    model = Autoencoder(arch["latent_dim"], tuple(arch["channels"]), arch["res_blocks"], arch["res_hidden"],
                        arch["out_channels"])
    params = jax.tree.map(jnp.asarray, train.load_params(params_path))
    codebook = params.pop("codebook")
    image_shape = tuple(info["image_shape"])
    latent_shape = tuple(info["latent_shape"])
    quantizer = Quantizer.from_config(info.get("quantizer"), latent_shape[-1])
    if quantizer.kind == "rvq":
        raise ValueError(f"{workdir} holds a residual-VQ autoencoder, which this loader does not serve")

    @train.jit
    def _encode(x):
        z = quantizer.latent(model.encode(params, x))
        return z, quantizer.snap(z, codebook)[1]

    @train.jit
    def _decode_quantized(z):
        return jnp.clip(model.decode(params, quantizer.snap(z, codebook)[0]), 0.0, 1.0)

    @train.jit
    def _decode(z):
        return jnp.clip(model.decode(params, z), 0.0, 1.0)

    def encode(images):
        x = jnp.asarray(images)
        if x.ndim != 4 or x.shape[1:] != image_shape:
            raise ValueError(f"encode expects images [B, {', '.join(map(str, image_shape))}], got shape {x.shape}")
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        return _encode(x)

    def decode(z, quantize: bool = True):
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 4 or z.shape[1:] != latent_shape:
            raise ValueError(f"decode expects latents [B, {', '.join(map(str, latent_shape))}], got shape {z.shape}")
        return _decode_quantized(z) if quantize else _decode(z)

    info["codebook"] = np.asarray(codebook, np.float32)
    info["quantizer"] = quantizer.config()
    return encode, decode, info
