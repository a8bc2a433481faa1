"""Denoisers for diffusion models: a sinusoidal time embedding, an MLP for 2-D data, a small U-Net.

Every denoiser is called as `model.apply({"params": params}, x_t, t)` with `x_t` `[B, ...]` and
`t` an int array `[B]` of 0-based timesteps, and returns the predicted noise with `x_t`'s shape:
the `eps_fn(x_t, t)` of `genjax.diffusion`.

The U-Net follows the DDPM architecture (Ho et al. 2020, appendix B, after PixelCNN++ and the
Wide ResNet): residual blocks with GroupNorm and SiLU whose activations receive a projection of
the time embedding, a strided convolution to go down, nearest-neighbour upsampling followed by a
3x3 convolution to go up, skip connections concatenated on the way up, and self-attention at the
bottleneck. There are no transposed convolutions.

Convolutions are `genjax.nn.Conv`, whose gradients stay fast inside `lax.scan` on XLA:CPU.

References:
    J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.5 (the sinusoidal
    embedding).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn._conv import Conv, UpsampleConv

__all__ = ["sinusoidal_embedding", "TimeEmbedding", "MlpDenoiser", "UNet"]


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal features of the timesteps, as in the Transformer's position encoding.

        freq_k = max_period^(-k / (dim/2)),   emb = [sin(t freq_0..), cos(t freq_0..)]

    Args:
        t: timesteps `[B]` (int or float).
        dim: the embedding width, even.
        max_period: the longest period, in timesteps.

    Returns:
        float32 `[B, dim]`.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"t must be a vector of timesteps [B], got shape {t.shape}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # [dim/2]
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]  # [B, dim/2]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class TimeEmbedding(nn.Module):
    """`sinusoidal_embedding(t, dim)` followed by Dense(out) - SiLU - Dense(out): `[B]` -> `[B, out]`.

    The sinusoidal features are computed in float32 and cast to `dtype` (the denoisers pass their
    input's dtype, so that a network run in bfloat16 is not promoted back to float32 by them)."""

    dim: int = 64
    out_dim: int | None = None  # default 4 * dim, as in DDPM
    dtype: Any = jnp.float32  # of the features fed to the Dense layers

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        out = self.out_dim or 4 * self.dim
        h = sinusoidal_embedding(t, self.dim).astype(self.dtype)
        h = nn.silu(nn.Dense(out, name="dense1")(h))
        return nn.Dense(out, name="dense2")(h)


def _check_inputs(x: jax.Array, t: jax.Array, rank: int | None) -> None:
    if rank is not None and x.ndim != rank:
        raise ValueError(f"x must have rank {rank}, got shape {x.shape}")
    if jnp.shape(t) != (x.shape[0],):
        raise ValueError(f"t must have shape [B] = ({x.shape[0]},) (one timestep per example), got {jnp.shape(t)}")


class MlpDenoiser(nn.Module):
    """A noise predictor for low-dimensional data `[B, D]` (the 2-D toy distributions).

    `num_layers` hidden layers of width `hidden`; before each SiLU the layer receives a learned
    projection of the time embedding (`h = silu(Dense(h) + Dense(temb))`), so every layer knows
    the noise level. The output layer starts at zero (the initial prediction is "no noise").
    With `fourier_levels = L > 0` the input is `[x, sin(pi 2^k x), cos(pi 2^k x)]`, k < L (the
    positional encoding of NeRF, Mildenhall et al. 2020): an MLP of coordinates learns sharp
    functions of them much faster with it (Tancik et al. 2020), which narrow modes need.
    """

    hidden: int = 128
    num_layers: int = 3
    time_dim: int = 64
    fourier_levels: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        _check_inputs(x, t, 2)
        temb = TimeEmbedding(self.time_dim, dtype=x.dtype, name="time")(t)  # [B, 4 time_dim]
        h = x
        if self.fourier_levels:
            freqs = jnp.pi * 2.0 ** jnp.arange(self.fourier_levels, dtype=x.dtype)  # [L]
            angles = (x[:, :, None] * freqs).reshape(x.shape[0], -1)  # [B, D L]
            h = jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)
        for i in range(self.num_layers):
            h = nn.Dense(self.hidden, name=f"dense{i}")(h) + nn.Dense(self.hidden, name=f"time{i}")(temb)
            h = nn.silu(h)
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name="out")(h)  # [B, D]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv3x3, + Dense(time embedding), GroupNorm-SiLU-Conv3x3, + skip.

    GroupNorm uses gcd(groups, channels) groups, so any width works."""

    features: int
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]), name="norm1")(x))
        h = Conv(self.features, (3, 3), name="conv1")(h)
        h = h + nn.Dense(self.features, name="time")(nn.silu(temb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, self.features), name="norm2")(h))
        h = Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros, name="conv2")(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, (1, 1), name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels, with GroupNorm and a residual connection."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, hgt, wid, c = x.shape
        h = nn.GroupNorm(num_groups=math.gcd(self.groups, c), name="norm")(x).reshape(b, hgt * wid, c)
        q, k, v = (nn.Dense(c, name=n)(h) for n in ("q", "k", "v"))
        scores = jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(c)  # [B, HW, HW]
        w = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)  # (float32 under bfloat16)
        out = nn.Dense(c, kernel_init=nn.initializers.zeros, name="out")(jnp.einsum("bqk,bkc->bqc", w, v))
        return x + out.reshape(b, hgt, wid, c)


class UNet(nn.Module):
    """A small DDPM U-Net for images `[B, H, W, C]` (28x28 MNIST, or a 7x7 latent grid).

    `channels[i]` is the width at level i; each level but the last halves the resolution with a
    stride-2 convolution (28 -> 14 -> 7 with three levels), and the decoder mirrors it with
    nearest-neighbour upsampling and a 3x3 convolution to the finer level's width. Each level has
    `num_res_blocks` residual blocks on the way down and `num_res_blocks + 1` on the way up
    (every one taking a skip connection); the bottleneck is ResBlock - attention - ResBlock.
    With a single level there is no down- or upsampling (a residual network at the input
    resolution, for small latent grids). The output convolution starts at zero.

    Spatial sizes must be divisible by 2^(len(channels) - 1); `num_res_blocks` may be 0 (then
    only the decoder has residual blocks, one per level).
    """

    channels: Sequence[int] = (32, 64, 64)
    num_res_blocks: int = 1
    time_dim: int = 32
    attention: bool = True
    groups: int = 8
    out_channels: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        _check_inputs(x, t, 4)
        levels = len(self.channels)
        factor = 2 ** (levels - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"the image size {x.shape[1:3]} must be divisible by {factor} for {levels} levels")
        temb = TimeEmbedding(self.time_dim, dtype=x.dtype, name="time")(t)  # [B, 4 time_dim]
        h = Conv(self.channels[0], (3, 3), name="conv_in")(x)
        skips = [h]
        for i, ch in enumerate(self.channels):
            for j in range(self.num_res_blocks):
                h = ResBlock(ch, self.groups, name=f"down{i}_{j}")(h, temb)
                skips.append(h)
            if i < levels - 1:
                h = Conv(ch, (3, 3), strides=2, name=f"downsample{i}")(h)
                skips.append(h)
        h = ResBlock(self.channels[-1], self.groups, name="mid1")(h, temb)
        if self.attention:
            h = AttentionBlock(self.groups, name="mid_attn")(h)
        h = ResBlock(self.channels[-1], self.groups, name="mid2")(h, temb)
        for i in reversed(range(levels)):
            for j in range(self.num_res_blocks + 1):
                h = ResBlock(self.channels[i], self.groups, name=f"up{i}_{j}")(
                    jnp.concatenate([h, skips.pop()], axis=-1), temb)
            if i > 0:
                h = UpsampleConv(self.channels[i - 1], (3, 3), name=f"upsample{i}")(h)  # nearest x2, conv
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, h.shape[-1]), name="norm_out")(h))
        out = self.out_channels or x.shape[-1]
        return Conv(out, (3, 3), kernel_init=nn.initializers.zeros, name="conv_out")(h)
