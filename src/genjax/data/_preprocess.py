"""Image preprocessing helpers: uint8 -> [0, 1] floats, and dynamic binarization."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["binarize", "to_float"]


def to_float(images: jax.typing.ArrayLike) -> jax.Array:
    """Maps uint8 pixels 0..255 to float32 in [0, 1]: `x / 255`.

    Args:
      images: uint8 array of any shape, e.g. `[B, H, W, C]`.

    Returns:
      float32 array of the same shape.

    Raises:
      TypeError: `images` is not uint8 (a float input has probably been scaled already).
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise TypeError(f"to_float expects uint8 pixels 0..255, got dtype {images.dtype}")
    return images.astype(jnp.float32) / jnp.float32(255.0)


def binarize(key: jax.Array, x: jax.Array) -> jax.Array:
    """Dynamic binarization: resamples `b ~ Bernoulli(x)` elementwise, a fresh draw per call.

    Used for binarized MNIST with a Bernoulli likelihood (Salakhutdinov & Murray 2008; Burda et
    al. 2016), where a new binarization is drawn for every minibatch.

    Args:
      key: PRNG key.
      x: floating array with values in [0, 1] (e.g. from `to_float`), any shape.

    Returns:
      array of `x`'s shape and dtype with values in {0, 1}.

    References:
      R. Salakhutdinov, I. Murray. On the quantitative analysis of deep belief networks. ICML 2008.
      Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"binarize expects probabilities in [0, 1] (floating), got {x.dtype}")
    return jax.random.bernoulli(key, x).astype(x.dtype)
