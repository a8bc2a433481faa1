"""2-D convolution whose weight gradient stays fast inside `lax.scan` on the CPU.

Measured on XLA:CPU (jax 0.10.2, 2 cores): the weight gradient that autodiff emits for a
convolution runs 35-40x slower inside a `lax.scan`/`while` body than as a top-level op (a
3x3, 32->64 channel conv on a [64, 14, 14, 32] batch: 7 ms per call, 250-340 ms per
iteration in a scan), and its input gradient (a transposed convolution) ~100x slower (4.5 ms
vs 500 ms in a U-Net), which made fused training steps several times slower than per-step
dispatch. Written instead as ordinary NHWC/HWIO convolutions (of the transposed input with the
transposed output gradient; of the dilated output gradient with the flipped kernel), they take
the same time in the loop as outside. `conv2d` uses those forms on the CPU (a `custom_vjp`);
on GPU/TPU it is the plain XLA convolution.
Values and gradients are the same up to float rounding (tests compare with `jax.grad` of
`lax.conv_general_dilated`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _pads(x_shape, w_shape, strides, padding) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)), got {padding!r}")
        return tuple(lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding))
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != 2:
        raise ValueError(f"padding needs one (lo, hi) pair per spatial axis, got {padding!r}")
    return pads


def _conv(x, w, strides, pads):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu(x, w, strides, pads):
    return _conv(x, w, strides, pads)


def _conv_cpu_fwd(x, w, strides, pads):
    return _conv(x, w, strides, pads), (x, w)


def _conv_cpu_bwd(strides, pads, residuals, dy):
    x, w = residuals
    kh, kw = w.shape[:2]
    # dx: the transposed convolution written as an ordinary one (autodiff's form is ~100x slower
    # inside a scan on XLA:CPU too): dy dilated by the stride, padded, convolved with the
    # spatially flipped kernel with its channel axes swapped.
    w_t = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))  # [kh, kw, O, C]
    dx_pads = tuple((k - 1 - lo, n - (p - 1) * s - 1 + lo)
                    for k, (lo, _), n, p, s in zip((kh, kw), pads, x.shape[1:3], dy.shape[1:3], strides))
    dx = lax.conv_general_dilated(dy, w_t, (1, 1), dx_pads, lhs_dilation=strides, dimension_numbers=_DN)
    # dW[i, j, c, o] = sum_{n, p, q} xpad[n, p*s + i, q*s + j, c] * dy[n, p, q, o]: a VALID
    # convolution of xpad^T [C, Hp, Wp, N] with dy^T [P, Q, N, O] dilated by the stride.
    xpad = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    lhs = jnp.transpose(xpad, (3, 1, 2, 0))  # [C, Hp, Wp, N]
    rhs = jnp.transpose(dy, (1, 2, 0, 3))  # [P, Q, N, O]
    dw = lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", rhs_dilation=strides, dimension_numbers=_DN)
    dw = jnp.transpose(dw[:, :kh, :kw, :], (1, 2, 0, 3))  # [kh, kw, C, O]
    return dx, dw.astype(w.dtype)


_conv_cpu.defvjp(_conv_cpu_fwd, _conv_cpu_bwd)


def conv2d(
    x: jax.Array,
    w: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
) -> jax.Array:
    """NHWC x HWIO convolution, [B, H, W, C] * [kh, kw, C, O] -> [B, H', W', O].

    Args:
        x: input batch, [B, H, W, C].
        w: kernel, [kh, kw, C, O].
        strides: an int or a pair.
        padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs x [B, H, W, C] and w [kh, kw, C, O], got {x.shape} and {w.shape}")
    if x.shape[-1] != w.shape[2]:
        raise ValueError(f"x has {x.shape[-1]} channels but the kernel expects {w.shape[2]}")
    strides = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
    pads = _pads(x.shape, w.shape, strides, padding)
    if jax.default_backend() == "cpu":
        return _conv_cpu(x, w, strides, pads)
    return _conv(x, w, strides, pads)


class Conv(nn.Module):
    """A 2-D convolution layer (NHWC) built on `conv2d`; parameters `kernel` [kh, kw, C, O] and
    `bias` [O], initialised like `flax.linen.Conv` (LeCun normal, zeros)."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: int | tuple[int, int] = 1
    padding: str | tuple[tuple[int, int], tuple[int, int]] = "SAME"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
        y = conv2d(x, kernel.astype(x.dtype), self.strides, self.padding)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y
