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

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genjax.nn import _conv as conv_lib

_DN = ("NHWC", "HWIO", "NHWC")


# ------------------------------------------------------------------------------ convolution
# Measured on XLA:CPU (jax 0.10.2, 2 cores, batch 32): inside `lax.scan`, the input gradient that
# autodiff emits for a convolution with several input channels (a convolution with the kernel's
# I/O dimensions swapped) runs 30-150x slower than as a top-level op (3x3, 32->16 channels on
# 14x14: 4 ms jitted, 184 ms per scan iteration), the same pathology as the weight gradient that
# `genjax.nn.conv2d` already works around. Written as an ordinary NHWC/HWIO convolution of the
# (stride-dilated) output gradient with the flipped, I/O-transposed kernel, it takes 1 ms. `_Conv`
# is `genjax.nn.Conv` (same parameters, same values and gradients) with that input gradient too;
# it can become `genjax.nn.Conv` once `conv2d` computes its input gradient this way.


def _input_grad(x_shape, w, dy, strides, pads):
    """dL/dx of `conv(x, w)` given dL/dy: a plain convolution (JAX's transpose rule, made explicit)."""
    kh, kw = w.shape[:2]
    w_t = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))  # [kh, kw, O, C]
    padding = []
    for i, k in enumerate((kh, kw)):
        before = k - pads[i][0] - 1
        after = x_shape[1 + i] + k - 1 - ((dy.shape[1 + i] - 1) * strides[i] + 1) - before
        padding.append((before, after))
    return lax.conv_general_dilated(dy, w_t, (1, 1), padding, lhs_dilation=strides, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_scan_friendly(x, w, strides, pads):
    return conv_lib._conv(x, w, strides, pads)


def _conv_fwd(x, w, strides, pads):
    return conv_lib._conv(x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, residuals, dy):
    x, w = residuals
    _, dw = conv_lib._conv_cpu_bwd(strides, pads, residuals, dy)  # its dx is dead code, removed by XLA
    return _input_grad(x.shape, w, dy, strides, pads).astype(x.dtype), dw


_conv_scan_friendly.defvjp(_conv_fwd, _conv_bwd)


class _Conv(conv_lib.Conv):
    """`genjax.nn.Conv` whose input gradient is also fast inside `lax.scan` on the CPU."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
        strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
        pads = conv_lib._pads(x.shape, kernel.shape, strides, self.padding)
        if jax.default_backend() == "cpu":
            y = _conv_scan_friendly(x, kernel.astype(x.dtype), strides, pads)
        else:
            y = conv_lib._conv(x, kernel.astype(x.dtype), strides, pads)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y


Conv = _Conv


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
        x = nn.relu(Conv(c0, (3, 3), name="up1")(upsample_nearest(x)))  # [B, 2h, 2w, c0]
        return Conv(self.out_channels, (3, 3), name="up2")(upsample_nearest(x))  # [B, 4h, 4w, C]
