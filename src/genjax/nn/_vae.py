"""VAE encoder/decoder pairs for 28x28 images: an MLP (PyTorch's example, the IWAE paper's) and a
small convolutional variant.

Both modules have the same interface:

- `encode(x [B, H, W, C]) -> (mean [B, D], logvar [B, D])`: the Gaussian q(z | x);
- `decode(z [N, D]) -> logits [N, H, W, C]`: the Bernoulli p(x | z), as logits;
- `__call__(x, key) -> (logits, mean, logvar)`: encode, draw `z` with the reparameterization
  trick (`genjax.vae.reparameterize`, an explicit key: no hidden RNG state), decode.

Encoder parameters are named `enc_*` and decoder parameters `dec_*`, so a step can take the
encoder's part of a gradient (`{k: v for k, v in grads.items() if k.startswith("enc")}`).
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import vae
from genjax.nn._conv import Conv, UpsampleConv

_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _check_images(x: jax.Array, image_shape: tuple[int, ...]) -> None:
    if x.ndim != len(image_shape) + 1 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"x must be a batch of images [B, {', '.join(map(str, image_shape))}], got shape {x.shape}")


class VaeMlp(nn.Module):
    """MLP encoder and decoder with a Gaussian latent and a Bernoulli (logits) decoder.

    Encoder: flatten -> Dense(h_1) -> act -> ... -> Dense(h_n) -> act -> {Dense(D) mean,
    Dense(D) logvar}. Decoder: Dense(h_n) -> act -> ... -> Dense(h_1) -> act -> Dense(H*W*C)
    logits, reshaped to `image_shape`.

    The defaults are PyTorch's classic VAE example (`pytorch/examples`, `vae/main.py`):
    784-400-20 with ReLU, mirrored decoder (20-400-784), Bernoulli decoder (logits here; the
    example applies a sigmoid and then a binary cross-entropy, the same loss up to rounding),
    trained with batch 128 and Adam(1e-3). The example sums its loss over the batch where
    `experiments.vae` averages it (Adam is invariant to that scale up to its epsilon); recent
    versions of the example add a continuous-Bernoulli normaliser, which this model does not.
    The IWAE paper's one-stochastic-layer model
    (Burda et al. 2016, section 5) is `VaeMlp(hidden_dims=(200, 200), latent_dim=50,
    activation="tanh")`. Initialisation is Flax's (LeCun normal weights, zero biases), not
    PyTorch's uniform one.

    Attributes:
      hidden_dims: widths of the encoder's hidden layers (the decoder uses them reversed).
      latent_dim: D.
      activation: "relu" or "tanh".
      image_shape: (H, W, C) of the data.
    """

    hidden_dims: tuple[int, ...] = (400,)
    latent_dim: int = 20
    activation: Literal["relu", "tanh"] = "relu"
    image_shape: tuple[int, int, int] = (28, 28, 1)

    def setup(self):
        n = len(self.hidden_dims)
        self.enc_hidden = [nn.Dense(h, name=f"enc_{i}") for i, h in enumerate(self.hidden_dims)]
        self.enc_mean = nn.Dense(self.latent_dim, name="enc_mean")
        self.enc_logvar = nn.Dense(self.latent_dim, name="enc_logvar")
        self.dec_hidden = [nn.Dense(h, name=f"dec_{n - 1 - i}") for i, h in enumerate(reversed(self.hidden_dims))]
        size = 1
        for s in self.image_shape:
            size *= s
        self.dec_out = nn.Dense(size, name="dec_out")

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_images(x, self.image_shape)
        act = _activation(self.activation)
        h = x.reshape(x.shape[0], -1)  # [B, H*W*C]
        for layer in self.enc_hidden:
            h = act(layer(h))  # [B, h_i]
        return self.enc_mean(h), self.enc_logvar(h)  # [B, D] each

    def decode(self, z: jax.Array) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must be [N, {self.latent_dim}], got shape {z.shape}")
        act = _activation(self.activation)
        h = z
        for layer in self.dec_hidden:
            h = act(layer(h))  # [N, h_i]
        return self.dec_out(h).reshape((z.shape[0], *self.image_shape))  # [N, H, W, C] logits

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        mean, logvar = self.encode(x)
        z = vae.reparameterize(key, mean, logvar)  # [B, D]
        return self.decode(z), mean, logvar


class VaeConv(nn.Module):
    """A small convolutional VAE for 28x28 images (the conv variant of `experiments.vae`).

    Encoder: Conv(c_1, 4x4, stride 2) -> act -> Conv(c_2, 4x4, stride 2) -> act (7x7) -> flatten
    -> Dense(hidden) -> act -> {Dense(D) mean, Dense(D) logvar}. Decoder: Dense(hidden) -> act ->
    Dense(7*7*c_2) -> act -> reshape -> [nearest 2x upsampling -> Conv(c_1, 3x3) -> act] ->
    nearest 2x upsampling -> Conv(C, 3x3) logits. Upsampling-then-convolution instead of
    transposed convolutions (no checkerboard artefacts, and `genjax.nn.Conv` keeps the weight
    gradient fast inside fused CPU steps).

    Attributes:
      channels: (c_1, c_2) feature maps of the two stride-2 stages.
      hidden_dim: the dense layer between the feature maps and the latent.
      latent_dim: D.
      activation: "relu" or "tanh".
      image_shape: (H, W, C) with H and W divisible by 4.
    """

    channels: tuple[int, int] = (32, 64)
    hidden_dim: int = 256
    latent_dim: int = 50
    activation: Literal["relu", "tanh"] = "relu"
    image_shape: tuple[int, int, int] = (28, 28, 1)

    def setup(self):
        h, w, _ = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(f"VaeConv needs image sides divisible by 4, got image_shape {self.image_shape}")
        c1, c2 = self.channels
        self.enc_conv0 = Conv(c1, (4, 4), strides=2, name="enc_conv0")
        self.enc_conv1 = Conv(c2, (4, 4), strides=2, name="enc_conv1")
        self.enc_dense = nn.Dense(self.hidden_dim, name="enc_dense")
        self.enc_mean = nn.Dense(self.latent_dim, name="enc_mean")
        self.enc_logvar = nn.Dense(self.latent_dim, name="enc_logvar")
        self.dec_dense = nn.Dense(self.hidden_dim, name="dec_dense")
        self.dec_grid = nn.Dense((h // 4) * (w // 4) * c2, name="dec_grid")
        self.dec_conv1 = UpsampleConv(c1, (3, 3), name="dec_conv1")
        self.dec_out = UpsampleConv(self.image_shape[-1], (3, 3), name="dec_out")

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_images(x, self.image_shape)
        act = _activation(self.activation)
        h = act(self.enc_conv0(x))  # [B, H/2, W/2, c1]
        h = act(self.enc_conv1(h))  # [B, H/4, W/4, c2]
        h = act(self.enc_dense(h.reshape(h.shape[0], -1)))  # [B, hidden]
        return self.enc_mean(h), self.enc_logvar(h)  # [B, D] each

    def decode(self, z: jax.Array) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must be [N, {self.latent_dim}], got shape {z.shape}")
        act = _activation(self.activation)
        h, w, _ = self.image_shape
        g = act(self.dec_grid(act(self.dec_dense(z))))  # [N, H/4 * W/4 * c2]
        g = g.reshape(z.shape[0], h // 4, w // 4, self.channels[1])  # [N, H/4, W/4, c2]
        g = act(self.dec_conv1(g))  # nearest x2, conv: [N, H/2, W/2, c1]
        return self.dec_out(g)  # nearest x2, conv: [N, H, W, C] logits

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        mean, logvar = self.encode(x)
        z = vae.reparameterize(key, mean, logvar)  # [B, D]
        return self.decode(z), mean, logvar
