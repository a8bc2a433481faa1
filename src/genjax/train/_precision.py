"""Mixed precision: a network computed in bfloat16, its master weights, gradients and loss in float32."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(dtype: Any, name: str = "dtype") -> jnp.dtype:
    """`dtype` ("float32" or "bfloat16", a string or a NumPy/JAX dtype) as a `jnp.dtype`.

    float16 is refused: its 5 exponent bits underflow small gradients unless the loss is scaled,
    which this runtime does not do; bfloat16 has float32's exponent range and needs no scaling.

    Raises:
        ValueError: any other dtype; the message names the argument `name`.
    """
    try:
        d = jnp.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d.name not in COMPUTE_DTYPES:
        raise ValueError(f"{name} must be one of {list(COMPUTE_DTYPES)}, got {dtype!r}")
    return d


def _is_float_array(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating)


def _cast(tree: Any, dtype: jnp.dtype) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if _is_float_array(x) and x.dtype != dtype else x, tree)


def mixed_precision(fn: Callable[..., Any], dtype: Any = "float32") -> Callable[..., Any]:
    """`fn` computed in `dtype`: `fn(params, *inputs, **options)` with every floating-point array
    among its arguments cast to `dtype` on the way in, and every floating-point output cast to
    float32 on the way out.

    Integer, boolean and key arrays (timesteps, labels, `jax.random.key`s, `rngs={...}`) and
    Python numbers pass through unchanged. Used inside a loss (the standard recipe of mixed
    precision on GPU/TPU), the master weights stay float32: the cast is part of the differentiated
    function, and the transpose of a cast casts back, so the gradient with respect to a float32
    parameter is float32, and so are the optimizer's update, its moments and the loss computed
    from the float32 outputs. The network's matmuls and convolutions, forward and backward, run on
    bfloat16 operands (on TPU/GPU: the bfloat16 peak; XLA accumulates their sums in float32).

    With `dtype="float32"` it returns `fn` itself, so a float32 program is unchanged bit for bit.

    Args:
      fn: a network's apply function, e.g. `module.apply` (called with `{"params": params}`) or
        `lambda params, x, t: ...`.
      dtype: "float32" or "bfloat16" (`compute_dtype`).

    Returns:
      The wrapped function (the same signature).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import train
      >>> f = train.mixed_precision(lambda p, x: x @ p["w"], "bfloat16")
      >>> p, x = {"w": jnp.ones((3, 2))}, jnp.ones((4, 3))
      >>> f(p, x).dtype, jax.grad(lambda p: f(p, x).sum())(p)["w"].dtype
      (dtype('float32'), dtype('float32'))

    Raises:
      ValueError: `dtype` is not float32 or bfloat16.
    """
    d = compute_dtype(dtype)
    if d == jnp.float32:
        return fn

    @functools.wraps(fn)
    def in_low_precision(*args, **kwargs):
        out = fn(*_cast(args, d), **_cast(kwargs, d))
        return _cast(out, jnp.dtype(jnp.float32))

    return in_low_precision
