"""The VQ-VAE autoencoder that `vqvae` trains and saves and `latent_diffusion` loads.

`Autoencoder` is the model (encoder and decoder modules and the pure functions around them);
`save_autoencoder(workdir, ...)` writes `autoencoder.msgpack` (parameters `{"encoder",
"decoder", "codebook"}`, flax msgpack, no pickle) and `autoencoder.json` (architecture and
statistics); `load_autoencoder(workdir)` returns jitted `encode` and `decode` functions and the
info (see `experiments/vqvae.py` for the whole interface).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

AUTOENCODER_PARAMS = "autoencoder.msgpack"
AUTOENCODER_CONFIG = "autoencoder.json"


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
      latents), otherwise decoded as given.
    - `info`: the contents of `autoencoder.json` (architecture, `num_codes`, `image_shape`,
      `latent_shape`, `latent_mean`/`latent_std` of the training latents, held-out metrics, ...)
      plus `"codebook"`, the [K, D] float32 numpy array.

    Raises:
      FileNotFoundError: the run directory holds no saved autoencoder (run the experiment).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import report, train, vq

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

    @train.jit
    def _encode(x):
        z = model.encode(params, x)
        return z, vq.nearest_code(z, codebook)

    @train.jit
    def _decode_quantized(z):
        return jnp.clip(model.decode(params, vq.quantize(z, codebook)[0]), 0.0, 1.0)

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
    return encode, decode, info
