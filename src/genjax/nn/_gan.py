"""GAN layers and networks: minibatch discrimination, virtual batch norm, 2-D MLPs, a 28x28 DCGAN.

* `MinibatchDiscrimination` and `VirtualBatchNorm`: the two layers of Salimans et al. 2016
  ("Improved techniques for training GANs", sections 3.2 and 3.4).
* `MlpGenerator` / `MlpDiscriminator`: the small fully connected networks of the 2-D
  mode-collapse benchmark (ring, grid).
* `DcganGenerator` / `DcganDiscriminator`: a DCGAN (Radford et al. 2016) for 28x28 images. The
  generator upsamples with nearest-neighbour resizing followed by a convolution ("resize-conv",
  Odena et al. 2016, which also avoids checkerboard artifacts); convolutions are `genjax.nn.Conv`.

Batch-dependent layers (batch norm, virtual batch norm, minibatch discrimination) make a network's
output for one example depend on the others: a WGAN-GP critic must not use them (its gradient
penalty is per example), which is why the discriminators here have no normalization.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import _backend
from genjax.nn._conv import Conv, UpsampleConv

__all__ = [
    "DcganDiscriminator",
    "DcganGenerator",
    "MinibatchDiscrimination",
    "MlpDiscriminator",
    "MlpGenerator",
    "VirtualBatchNorm",
]

Norm = Literal["none", "batch", "virtual_batch"]


@jax.custom_jvp
def _abs(x: jax.Array) -> jax.Array:
    """|x| whose derivative is computed without comparisons.

    `jnp.abs`'s derivative `sign(x)` (a compare and select) runs about 15x slower than a
    division on XLA:CPU over the [B, B, K, C] pairwise differences of minibatch
    discrimination; `x / max(|x|, tiny)` is the same sign (0 at 0) and vectorizes. The CPU path
    only (`_abs_any`). The sign is
    held constant (its derivative is 0, as jnp.abs's), so second derivatives (the R1 and WGAN-GP
    penalties differentiate the discriminator twice) stay finite at x = 0, where the derivative
    of the division would be 1 / tiny.
    """
    return jnp.abs(x)


@_abs.defjvp
def _abs_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    tiny = jnp.finfo(x.dtype).tiny
    sign = jax.lax.stop_gradient(x / jnp.maximum(jnp.abs(x), tiny))
    return jnp.abs(x), t * sign


def _abs_any(x: jax.Array) -> jax.Array:
    """|x|: `_abs` on CPU, `jnp.abs` elsewhere (`genjax._backend`, workaround ``abs_grad``)."""
    return _backend.select("abs_grad", cpu=_abs, plain=jnp.abs)(x)


def _closeness_kernel_major(m: jax.Array) -> jax.Array:
    """o[b, k] = sum_j exp(-||m[b, k] - m[j, k]||_1) for m [B, K, C], kernel-major: [K, B, B] with
    the sum over C unrolled and the sum over j on the minor axis, about 3x faster on XLA:CPU
    than reducing a [B, B, K, C] array (same values up to rounding)."""
    m = jnp.transpose(m, (1, 0, 2))  # [K, B, C]
    l1 = sum(_abs_any(m[:, :, None, c] - m[:, None, :, c]) for c in range(m.shape[-1]))  # [K, B, B]
    return jnp.sum(jnp.exp(-l1), axis=-1).T  # [B, K]


def _closeness_plain(m: jax.Array) -> jax.Array:
    """The same as `_closeness_kernel_major`, as the [B, B, K, C] reduction."""
    l1 = jnp.sum(_abs_any(m[:, None] - m[None, :]), axis=-1)  # [B, B, K]
    return jnp.sum(jnp.exp(-l1), axis=1)  # [B, K]


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination: appends to each example its closeness to the rest of the batch.

    For features f(x_i) in R^A and a learned tensor T in R^{A x K x C}:

        M_i = f(x_i) T                                   # [K, C]
        c_k(x_i, x_j) = exp(-||M_{i,k} - M_{j,k}||_1)
        o(x_i)_k = sum_{j=1..n} c_k(x_i, x_j)             # [K]

    and the layer returns [f(x_i), o(x_i)]. As in the paper the sum runs over the whole batch,
    including j = i (a constant 1). A collapsed generator produces batches whose o(x) is large,
    which the discriminator can then detect.

    Attributes:
      num_kernels: K.
      kernel_dim: C.

    Input [B, A] -> output [B, A + K]. Memory O(B^2 K C).
    """

    num_kernels: int = 16
    kernel_dim: int = 4
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"MinibatchDiscrimination needs features [B, A], got shape {x.shape}")
        if self.num_kernels < 1 or self.kernel_dim < 1:
            raise ValueError(f"num_kernels and kernel_dim must be >= 1, got {self.num_kernels}, {self.kernel_dim}")
        t = self.param("kernel", self.kernel_init, (x.shape[-1], self.num_kernels * self.kernel_dim))
        m = (x @ t.astype(x.dtype)).reshape(x.shape[0], self.num_kernels, self.kernel_dim)  # [B, K, C]
        # kernel-major on CPU (genjax._backend, workaround "minibatch_layout")
        o = _backend.select("minibatch_layout", cpu=_closeness_kernel_major, plain=_closeness_plain)(m)
        return jnp.concatenate([x, o], axis=-1)


def _moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example E[x] and E[x^2] over all axes but the first and the last: [B, C] each."""
    axes = tuple(range(1, x.ndim - 1))
    return jnp.mean(x, axis=axes), jnp.mean(jnp.square(x), axis=axes)


class VirtualBatchNorm(nn.Module):
    """Virtual batch normalization: normalizes with a fixed reference batch's statistics.

    Batch norm makes an example's output depend on the other examples of its minibatch. Virtual
    batch norm (Salimans et al. 2016, section 3.4) instead normalizes each example x with the
    statistics of a *reference batch*, chosen once at the start of training and kept fixed (in
    the training state), together with x itself:

        mu(x) = (R mean_ref + m1(x)) / (R + 1),   var(x) = (R sq_ref + m2(x)) / (R + 1) - mu(x)^2
        y = gamma * (x - mu(x)) / sqrt(var(x) + eps) + beta

    where mean_ref and sq_ref are the reference batch's per-feature E[h] and E[h^2] at this layer
    (over the batch and spatial axes), and m1, m2 the same moments of x over its spatial axes.
    The reference examples themselves are normalized with the reference statistics alone.

    The reference batch's activations at this layer depend on the earlier layers, so a network
    runs the reference inputs through with every call: `x` holds the reference rows first, then
    the examples, and `num_reference` says how many rows are reference. Gradients flow through
    the reference statistics, as in the paper.

    Attributes:
      epsilon: added to the variance.

    Call:
      x: [R + B, ..., C] (channels last), the first `num_reference` = R rows the reference batch.
      num_reference: R >= 1, a static int.

    Returns:
      The normalized array, the shape of x (the reference rows included).
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, num_reference: int) -> jax.Array:
        if not isinstance(num_reference, int) or isinstance(num_reference, bool):
            raise TypeError(f"num_reference must be a static int, got {num_reference!r}")
        if x.ndim < 2:
            raise ValueError(f"VirtualBatchNorm needs [N, ..., C], got shape {x.shape}")
        if not 1 <= num_reference <= x.shape[0]:
            raise ValueError(f"num_reference must be in 1..{x.shape[0]} (the rows of x), got {num_reference}")
        c = x.shape[-1]
        gamma = self.param("scale", nn.initializers.ones_init(), (c,))
        beta = self.param("bias", nn.initializers.zeros_init(), (c,))
        m1, m2 = _moments(x.astype(jnp.float32))  # [N, C]
        r = num_reference
        ref_m1, ref_m2 = jnp.mean(m1[:r], axis=0), jnp.mean(m2[:r], axis=0)  # [C]
        mu = (r * ref_m1 + m1) / (r + 1.0)  # [N, C]: the virtual batch of each example
        sq = (r * ref_m2 + m2) / (r + 1.0)
        is_ref = (jnp.arange(x.shape[0]) < r)[:, None]  # [N, 1]
        mu = jnp.where(is_ref, ref_m1, mu)
        var = jnp.maximum(jnp.where(is_ref, ref_m2, sq) - jnp.square(mu), 0.0)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
        y = (x - mu.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + self.epsilon)
        return (y * gamma + beta).astype(x.dtype)


class _BatchNorm(nn.Module):
    """Batch norm with the current batch's statistics only (no running averages, no mutable
    state): the generator is always used in training mode, as in most GAN code."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        gamma = self.param("scale", nn.initializers.ones_init(), (c,))
        beta = self.param("bias", nn.initializers.zeros_init(), (c,))
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.var(x, axis=axes)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * gamma + beta


def _normalize(norm: Norm, x: jax.Array, num_reference: int, name: str) -> jax.Array:
    if norm == "none":
        return x
    if norm == "batch":
        return _BatchNorm(name=name)(x)
    if norm == "virtual_batch":
        return VirtualBatchNorm(name=name)(x, num_reference)
    raise ValueError(f"norm must be 'none', 'batch' or 'virtual_batch', got {norm!r}")


def _with_reference(z: jax.Array, reference_z: jax.Array | None, norm: Norm) -> tuple[jax.Array, int]:
    if norm == "virtual_batch":
        if reference_z is None:
            raise ValueError("a generator with norm='virtual_batch' needs its fixed reference batch `reference_z`")
        if reference_z.shape[1:] != z.shape[1:]:
            raise ValueError(f"reference_z {reference_z.shape} and z {z.shape} differ in their latent shape")
        return jnp.concatenate([reference_z, z], axis=0), reference_z.shape[0]
    return z, 0


class MlpGenerator(nn.Module):
    """A fully connected generator for 2-D toys: z [B, latent] -> x [B, out_dim].

    `depth` hidden layers of `hidden` ReLU units (with optional normalization), a linear output.
    """

    hidden: int = 128
    depth: int = 3
    out_dim: int = 2
    norm: Norm = "none"

    @nn.compact
    def __call__(self, z: jax.Array, reference_z: jax.Array | None = None) -> jax.Array:
        if z.ndim != 2:
            raise ValueError(f"z must be [B, latent_dim], got shape {z.shape}")
        h, r = _with_reference(z, reference_z, self.norm)
        for i in range(self.depth):
            h = nn.Dense(self.hidden, name=f"dense{i}")(h)
            h = nn.relu(_normalize(self.norm, h, r, f"norm{i}"))
        return nn.Dense(self.out_dim, name="out")(h)[r:]


class MlpDiscriminator(nn.Module):
    """A fully connected discriminator (or WGAN critic) for 2-D toys: x [B, D] -> logits [B].

    `depth` hidden layers of `hidden` leaky-ReLU (0.2) units; the last hidden layer is the
    feature layer for feature matching; with `minibatch_kernels > 0` a `MinibatchDiscrimination`
    layer sits between it and the output.

    Call: `(x, with_features=False)`; with features it returns `(logits [B], features [B, hidden])`.
    """

    hidden: int = 128
    depth: int = 3
    minibatch_kernels: int = 0
    minibatch_dim: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, with_features: bool = False):
        if x.ndim != 2:
            raise ValueError(f"x must be [B, D], got shape {x.shape}")
        h = x
        for i in range(self.depth):
            h = nn.leaky_relu(nn.Dense(self.hidden, name=f"dense{i}")(h), 0.2)
        features = h
        if self.minibatch_kernels:
            h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_dim, name="minibatch")(h)
        logits = nn.Dense(1, name="out")(h)[:, 0]
        return (logits, features) if with_features else logits


class DcganGenerator(nn.Module):
    """A DCGAN generator for 28x28 images: z [B, latent] -> images [B, 28, 28, channels] in [0, 1].

    dense -> [7, 7, 2w] -> norm, ReLU -> upsample x2, conv3x3 (w) -> norm, ReLU -> upsample x2,
    conv3x3 (channels) -> sigmoid, with w = `width`. `norm="virtual_batch"` needs `reference_z`
    (the fixed reference batch of latents). `kernel_size` k makes both convolutions kxk (the
    DCGAN paper's are 5x5).
    """

    width: int = 32
    channels: int = 1
    norm: Norm = "batch"
    kernel_size: int = 3

    @nn.compact
    def __call__(self, z: jax.Array, reference_z: jax.Array | None = None) -> jax.Array:
        if z.ndim != 2:
            raise ValueError(f"z must be [B, latent_dim], got shape {z.shape}")
        h, r = _with_reference(z, reference_z, self.norm)
        w = self.width
        h = nn.Dense(7 * 7 * 2 * w, name="project")(h).reshape(-1, 7, 7, 2 * w)
        h = nn.relu(_normalize(self.norm, h, r, "norm0"))
        k = (self.kernel_size, self.kernel_size)
        h = nn.relu(_normalize(self.norm, UpsampleConv(w, k, name="conv1")(h), r, "norm1"))  # [N, 14, 14, w]
        h = UpsampleConv(self.channels, k, name="conv2")(h)  # [N, 28, 28, channels]
        return nn.sigmoid(h)[r:]


class DcganDiscriminator(nn.Module):
    """A DCGAN discriminator (or critic) for 28x28 images: [B, 28, 28, C] -> logits [B].

    conv4x4/2 (w) -> lReLU -> conv4x4/2 (2w) -> lReLU -> dense (features) -> lReLU ->
    [minibatch discrimination] -> dense(1). No normalization (so it can serve as a WGAN-GP
    critic). Call `(x, with_features=False)`: with features it returns `(logits, features)`,
    features the [B, feature_dim] penultimate layer used by feature matching.
    """

    width: int = 32
    feature_dim: int = 128
    minibatch_kernels: int = 0
    minibatch_dim: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, with_features: bool = False):
        if x.ndim != 4:
            raise ValueError(f"x must be images [B, H, W, C], got shape {x.shape}")
        w = self.width
        h = nn.leaky_relu(Conv(w, (4, 4), strides=2, name="conv0")(x), 0.2)  # [B, 14, 14, w]
        h = nn.leaky_relu(Conv(2 * w, (4, 4), strides=2, name="conv1")(h), 0.2)  # [B, 7, 7, 2w]
        features = nn.leaky_relu(nn.Dense(self.feature_dim, name="dense")(h.reshape(h.shape[0], -1)), 0.2)
        h = features
        if self.minibatch_kernels:
            h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_dim, name="minibatch")(h)
        logits = nn.Dense(1, name="out")(h)[:, 0]
        return (logits, features) if with_features else logits
