"""The convolutional encoder and decoder of the MNIST VQ-VAE (a 7x7 grid of D-dimensional latents).

The quantizer itself is not a layer: it is `genjax.vq.quantize` between the two, and the codebook
is either a parameter (learned by `genjax.vq.codebook_loss`) or an `EmaCodebook` state.

    encoder: [B, 28, 28, C] -> conv 4x4/2 -> [B, 14, 14, c0] -> conv 4x4/2 -> [B, 7, 7, c1]
             -> residual blocks -> conv 1x1 -> [B, 7, 7, D]
    decoder: [B, 7, 7, D] -> conv 3x3 -> [B, 7, 7, c1] -> residual blocks
             -> nearest x2 -> conv 3x3 -> [B, 14, 14, c0] -> nearest x2 -> conv 3x3 -> [B, 28, 28, C]

As in the VQ-VAE paper's image models (van den Oord et al. 2017, section 4.1: two stride-2
convolutions, residual 3x3 -> 1x1 blocks, and their mirror image in the decoder), except that the
decoder upsamples by nearest-neighbour resizing followed by a convolution instead of transposed
convolutions (Odena et al. 2016, "Deconvolution and checkerboard artifacts"), which also keeps
every convolution a `genjax.nn.Conv` (fast weight gradients inside `lax.scan` on the CPU).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genjax.nn._conv import Conv, UpsampleConv  # gradients stay fast inside lax.scan on XLA:CPU


# ------------------------------------------------------------------------------ the networks


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of [B, H, W, C] to [B, factor*H, factor*W, C]."""
    if x.ndim != 4:
        raise ValueError(f"upsample_nearest needs [B, H, W, C], got shape {x.shape}")
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class ResidualBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))), the VQ-VAE paper's residual block."""

    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = Conv(self.hidden, (3, 3), name="conv3x3")(nn.relu(x))
        h = Conv(x.shape[-1], (1, 1), name="conv1x1")(nn.relu(h))
        return x + h


class VQVAEEncoder(nn.Module):
    """Images [B, H, W, C] (H, W divisible by 4; centred, e.g. x - 0.5) -> latents [B, H/4, W/4, D]."""

    latent_dim: int = 16
    channels: Sequence[int] = (32, 64)
    res_blocks: int = 1
    res_hidden: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f"the encoder needs images [B, H, W, C] with H, W divisible by 4, got {x.shape}")
        c0, c1 = self.channels
        x = nn.relu(Conv(c0, (4, 4), strides=2, name="down1")(x))  # [B, H/2, W/2, c0]
        x = Conv(c1, (4, 4), strides=2, name="down2")(x)  # [B, H/4, W/4, c1]
        for i in range(self.res_blocks):
            x = ResidualBlock(self.res_hidden, name=f"res{i}")(x)
        return Conv(self.latent_dim, (1, 1), name="to_latent")(nn.relu(x))  # [B, H/4, W/4, D]


class VQVAEDecoder(nn.Module):
    """Latents [B, h, w, D] -> images [B, 4h, 4w, out_channels] (unbounded; the caller shifts/clips)."""

    out_channels: int = 1
    channels: Sequence[int] = (32, 64)
    res_blocks: int = 1
    res_hidden: int = 32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if z.ndim != 4:
            raise ValueError(f"the decoder needs latents [B, h, w, D], got shape {z.shape}")
        c0, c1 = self.channels
        x = Conv(c1, (3, 3), name="from_latent")(z)  # [B, h, w, c1]
        for i in range(self.res_blocks):
            x = ResidualBlock(self.res_hidden, name=f"res{i}")(x)
        x = nn.relu(x)
        x = nn.relu(UpsampleConv(c0, (3, 3), name="up1")(x))  # [B, 2h, 2w, c0]
        return UpsampleConv(self.out_channels, (3, 3), name="up2")(x)  # [B, 4h, 4w, C]
