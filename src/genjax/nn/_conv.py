"""2-D convolution whose gradients stay fast inside `lax.scan` on the CPU, in both AD modes.

Measured on XLA:CPU (jax 0.10.2, 2 cores): the weight gradient that autodiff emits for a
convolution runs 35-40x slower inside a `lax.scan`/`while` body than as a top-level op (a
3x3, 32->64 channel conv on a [64, 14, 14, 32] batch: 7 ms per call, 250-340 ms per
iteration in a scan), and its input gradient (a transposed convolution) ~100x slower (4.5 ms
vs 500 ms in a U-Net), which made fused training steps several times slower than per-step
dispatch. Written instead as ordinary NHWC/HWIO convolutions (of the transposed input with the
transposed output gradient; of the dilated output gradient with the flipped kernel), they take
the same time in the loop as outside.

On the CPU `conv2d` is a small primitive (`_conv_cpu_p`): its forward pass is the XLA
convolution, its JVP is bilinear (`conv(tx, w) + conv(x, tw)`, with the same primitive, so
`jax.jvp`, `jax.jacfwd`, `jax.linearize` and higher orders work), and its transpose, which
reverse mode uses, is the pair of ordinary convolutions above: the reverse pass is the same
program as the earlier `custom_vjp` (identical optimized HLO for `jax.grad` of a conv in a scan
and of the DCGAN networks). Differentiated twice (the R1 and WGAN-GP penalties), the outer
gradient of the forward convolution now takes the fast form too, where the `custom_vjp`'s
forward rule had handed XLA's autodiff a plain convolution. Other platforms
get the plain `lax.conv_general_dilated`; the choice is made at lowering
(`genjax._backend.select("conv_grad", ...)`, off switch ``conv_grad``), so a program exported for
GPU/TPU from a CPU host holds only the plain convolution.
Values and gradients are the same up to float rounding (tests compare with `jax.grad` /
`jax.jvp` of `lax.conv_general_dilated`). Under `jax.shard_map` forward mode and input gradients
work; the weight gradient of a batch-sharded input on the CPU path does not (nor did the
`custom_vjp`'s): switch ``conv_grad`` off there.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from genjax import _backend

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


def _input_grad(w, dy, x_shape, strides, pads):
    """dx: the transposed convolution written as an ordinary one (autodiff's form is ~100x
    slower inside a scan on XLA:CPU): dy dilated by the stride, padded, convolved with the
    spatially flipped kernel with its channel axes swapped."""
    kh, kw = w.shape[:2]
    w_t = jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2))  # [kh, kw, O, C]
    dx_pads = tuple((k - 1 - lo, n - (p - 1) * s - 1 + lo)
                    for k, (lo, _), n, p, s in zip((kh, kw), pads, x_shape[1:3], dy.shape[1:3], strides))
    return lax.conv_general_dilated(dy, w_t, (1, 1), dx_pads, lhs_dilation=strides, dimension_numbers=_DN)


# `_weight_grad`'s split form: XLA:CPU hands a float32 NHWC convolution to YNNPACK unless both its
# input and its output features number <= 16 (`IsConvolutionOpSupportedByYnn`, jax 0.10.2), and
# YNNPACK runs the weight gradient's convolution, whose window is the whole output grid, far
# slower than XLA's own (Eigen) convolution once that window is large: 2-5x at 14x14 and 28x28.
_EIGEN_MAX_FEATURES = 16
_SPLIT_MIN_WINDOW = 100  # P * Q from which the split pays (7x7: YNNPACK is faster; 14x14: not)


def _weight_grad(x, dy, w_shape, strides, pads, split=False):
    """dW[i, j, c, o] = sum_{n, p, q} xpad[n, p*s + i, q*s + j, c] * dy[n, p, q, o]: a VALID
    convolution of xpad^T [C, Hp, Wp, N] with dy^T [P, Q, N, O] dilated by the stride.

    With `split` and an output grid of at least `_SPLIT_MIN_WINDOW` positions, the convolution
    is cut into blocks of at most 16 examples (its input features) and 16 output channels, each
    one XLA's own convolution rather than YNNPACK's, and the batch blocks are summed (the same
    sum in another order; genjax._backend workaround ``conv_wgrad_split``)."""
    kh, kw = w_shape[:2]
    xpad = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    lhs = jnp.transpose(xpad, (3, 1, 2, 0))  # [C, Hp, Wp, N]
    rhs = jnp.transpose(dy, (1, 2, 0, 3))  # [P, Q, N, O]

    def conv(lhs, rhs):
        return lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", rhs_dilation=strides, dimension_numbers=_DN)

    n, o = rhs.shape[2:]
    g = _EIGEN_MAX_FEATURES
    if split and rhs.shape[0] * rhs.shape[1] >= _SPLIT_MIN_WINDOW and max(n, o) > g:
        blocks = [functools.reduce(lax.add, [conv(lhs[..., b:b + g], rhs[:, :, b:b + g, c:c + g])
                                             for b in range(0, n, g)])
                  for c in range(0, o, g)]
        dw = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=-1)
    else:
        dw = conv(lhs, rhs)
    return jnp.transpose(dw[:, :kh, :kw, :], (1, 2, 0, 3))  # [kh, kw, C, O]


# The CPU convolution: a primitive so that its JVP (forward mode) and its transpose (reverse mode)
# can both be given; `jax.custom_vjp` allows no forward mode, `jax.custom_jvp` no transpose.
_conv_cpu_p = Primitive("genjax_conv2d_cpu")


try:  # what lax.conv_general_dilated does before binding: under shard_map, make an invariant
    # operand varying over the other's manual axes (private, so optional)
    from jax._src.core import auto_insert_reshard as _align_operands
except ImportError:  # pragma: no cover
    def _align_operands(*args):
        return args


def _conv_cpu(x, w, strides, pads):
    x, w = _align_operands(x, w)
    return _conv_cpu_p.bind(x, w, strides=tuple(strides), pads=tuple(tuple(p) for p in pads))


@functools.lru_cache(maxsize=256)
def _conv_params(x_shape, x_dtype, w_shape, w_dtype, strides, pads) -> dict:
    """The parameters with which `_conv` binds `lax.conv_general_dilated_p` for these inputs."""
    jaxpr = jax.make_jaxpr(functools.partial(_conv, strides=strides, pads=pads))(
        jax.ShapeDtypeStruct(x_shape, x_dtype), jax.ShapeDtypeStruct(w_shape, w_dtype))
    (eqn,) = [e for e in jaxpr.eqns if e.primitive is lax.conv_general_dilated_p]
    return eqn.params


def _conv_cpu_abstract_eval(x, w, *, strides, pads):
    # XLA's convolution's own rule, so that what avals carry besides shape and dtype (the varying
    # manual axes under shard_map, shardings) is propagated as for the plain convolution
    params = _conv_params(x.shape, x.dtype, w.shape, w.dtype, strides, pads)
    out, _ = lax.conv_general_dilated_p.abstract_eval(x, w, **params)
    return out


def _conv_cpu_jvp(primals, tangents, *, strides, pads):
    (x, w), (tx, tw) = primals, tangents
    y = _conv_cpu(x, w, strides, pads)
    terms = []  # bilinear: d conv(x, w) = conv(dx, w) + conv(x, dw)
    if type(tx) is not ad.Zero:
        terms.append(_conv_cpu(tx, w, strides, pads))
    if type(tw) is not ad.Zero:
        terms.append(_conv_cpu(x, tw, strides, pads))
    if not terms:
        return y, ad.Zero.from_primal_value(y)
    return y, functools.reduce(lax.add, terms)


def _conv_cpu_transpose(ct, x, w, *, strides, pads):
    # linear in whichever of x, w is undefined (never both: the JVP's terms are one each)
    if type(ct) is ad.Zero:
        return None, None
    if ad.is_undefined_primal(x):
        return _input_grad(w, ct, x.aval.shape, strides, pads).astype(x.aval.dtype), None
    split = _backend.enabled("conv_wgrad_split")  # this rule only runs on the CPU path
    return None, _weight_grad(x, ct, w.aval.shape, strides, pads, split).astype(w.aval.dtype)


def _conv_cpu_batch(args, dims, *, strides, pads):
    (x, w), (bx, bw) = args, dims
    if bw is None:  # a batch of inputs, one kernel: fold the vmapped axis into the batch axis
        x = jnp.moveaxis(x, bx, 0)
        v, n = x.shape[:2]
        y = _conv_cpu(x.reshape(v * n, *x.shape[2:]), w, strides, pads)
        return y.reshape(v, n, *y.shape[1:]), 0
    # batched kernels: XLA's grouped convolution (correct in every mode; under an outer reverse
    # pass its transpose is autodiff's, not the CPU form)
    return jax.vmap(functools.partial(_conv, strides=strides, pads=pads), (bx, bw))(x, w), 0


_conv_cpu_p.def_impl(functools.partial(jax.jit, static_argnames=("strides", "pads"))(
    lambda x, w, strides, pads: _conv(x, w, strides, pads)))
_conv_cpu_p.def_abstract_eval(_conv_cpu_abstract_eval)
ad.primitive_jvps[_conv_cpu_p] = _conv_cpu_jvp
ad.primitive_transposes[_conv_cpu_p] = _conv_cpu_transpose
batching.primitive_batchers[_conv_cpu_p] = _conv_cpu_batch
mlir.register_lowering(_conv_cpu_p, mlir.lower_fun(
    lambda x, w, *, strides, pads: _conv(x, w, strides, pads), multiple_results=False))


def conv2d(
    x: jax.Array,
    w: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
) -> jax.Array:
    """NHWC x HWIO convolution, [B, H, W, C] * [kh, kw, C, O] -> [B, H', W', O].

    Forward and reverse mode differentiable on every backend (see the module docstring for the
    CPU path).

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
    conv = _backend.select(
        "conv_grad",
        cpu=lambda x, w: _conv_cpu(x, w, strides, pads),
        plain=lambda x, w: _conv(x, w, strides, pads),
    )
    return conv(x, w)


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


def _phase_taps(k: int) -> tuple[jax.Array, int, int]:
    """For a k x k kernel applied after nearest-neighbour 2x upsampling: the 0/1 matrix
    `taps[a, u, j]` (output phase a in {0, 1}, low-resolution tap u, kernel tap j), the shift s of
    phase 1's window against phase 0's, and phase 0's first low-resolution offset."""
    import numpy as np

    r = k // 2
    lo0, lo1 = (-r) // 2, (1 - r) // 2
    taps = np.zeros((2, r + 1, k), np.float32)
    for a, lo in ((0, lo0), (1, lo1)):
        for j in range(k):
            taps[a, (a + j - r) // 2 - lo, j] = 1.0
    return jnp.asarray(taps), lo1 - lo0, lo0


def upsample_conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
    """`conv2d(upsample_nearest(x, 2), w, padding="SAME")` computed at the input's resolution.

    After nearest-neighbour upsampling, each of the four output phases (even/odd row, even/odd
    column) of a k x k convolution (k odd) is a ((k+1)/2) x ((k+1)/2) convolution of the
    low-resolution input whose taps are sums of the kernel's taps (the "sub-pixel" form, Shi et
    al. 2016). The four phases run as one convolution with 4x the output channels, then are
    interleaved: 36 instead of 100 multiply-adds per output pixel and channel pair for k = 5, 16
    instead of 36 for k = 3. Same parameters, same function (up to float rounding), on every
    backend; gradients flow to `w` through the fixed tap sums.

    Args:
        x: [B, H, W, C].
        w: [k, k, C, O] with k odd.
    Returns:
        [B, 2H, 2W, O].
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"upsample_conv2d needs x [B, H, W, C] and w [k, k, C, O], got {x.shape} and {w.shape}")
    k = w.shape[0]
    if w.shape[1] != k or k % 2 == 0:
        raise ValueError(f"upsample_conv2d needs a square kernel of odd size, got {w.shape[:2]}")
    if x.shape[-1] != w.shape[2]:
        raise ValueError(f"x has {x.shape[-1]} channels but the kernel expects {w.shape[2]}")
    taps, s, lo0 = _phase_taps(k)
    m, (b, h, wd, _), o = taps.shape[1], x.shape, w.shape[3]
    phased = jnp.einsum("aui,bvj,ijco->uvcabo", taps.astype(w.dtype), taps.astype(w.dtype), w)
    pads = ((-lo0, lo0 + s + m - 1),) * 2  # phase 0's window starts at lo0, phase 1's ends at lo0 + s + m - 1
    y = conv2d(x, phased.reshape(m, m, w.shape[2], 4 * o), 1, pads)
    y = y.reshape(b, h + s, wd + s, 2, 2, o)
    rows = [jnp.stack([y[:, a * s:a * s + h, c * s:c * s + wd, a, c] for c in (0, 1)], axis=3) for a in (0, 1)]
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * wd, o)  # [B, H, 2, W, 2, O] -> [B, 2H, 2W, O]


class UpsampleConv(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a k x k `Conv` ("resize-convolution", Odena et
    al. 2016), computed by `upsample_conv2d` at the input's resolution. Its parameters are those
    of the `Conv` it replaces (`kernel` [k, k, C, O], `bias` [O], the same initialisers), so a
    checkpoint of `Conv(features, (k, k))(upsample_nearest(x))` loads unchanged."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
        y = upsample_conv2d(x, kernel.astype(x.dtype))
        return y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
