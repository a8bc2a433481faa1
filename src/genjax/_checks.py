"""Argument checks shared by the six math modules (private).

Every public math function validates its arguments in Python, at trace time (shapes, dtypes and
Python numbers are static), then calls one jitted kernel. The checks live here, once, so that the
policy is the same everywhere:

- **Real-valued arrays** (probabilities, logits, data, latents, scores) accept floating, integer
  and boolean arrays; integer and boolean inputs are promoted to the default float dtype (float32
  unless x64 is enabled), as `jax.numpy` functions do. Complex numbers, strings and objects are a
  `TypeError` naming the argument.
- **Index arrays** (timesteps, code indices) must have an integer dtype (`TypeError` otherwise).
- **PRNG keys** are a single typed key from `jax.random.key(seed)` or a legacy `uint32[2]` key from
  `jax.random.PRNGKey(seed)`. `None` is a `TypeError`: genjax never chooses a key for the caller.
- **Static numbers** (rates, levels, decays, gammas, eps, ...) given as Python numbers are checked
  against their domain (`ValueError`, NaN included); strings and booleans are a `TypeError`.
  Traced or array values cannot be checked at trace time and are used as given (document what the
  function does with an out-of-domain traced value).
- **Static integers** (counts, sizes, sample shapes) must be Python ints (or integer NumPy
  scalars): `2.5` and `True` are a `TypeError`, never truncated.

Messages name the argument, what was expected and what was given.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Axis = Union[int, Sequence[int], None]

__all__: list[str] = []  # private module: nothing is re-exported


def kernel(*static: str):
    """`jax.jit` with the given static argument names.

    An eager call compiles once per shape and dtype instead of once per primitive; inside a
    caller's jit/vmap/grad the kernel is inlined.
    """
    return functools.partial(jax.jit, static_argnames=static)


# --------------------------------------------------------------------------------------------
# Arrays.
# --------------------------------------------------------------------------------------------


def default_float() -> jnp.dtype:
    """The default floating dtype: float32, or float64 when x64 is enabled."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def real_array(x: ArrayLike, name: str) -> jax.Array:
    """`x` as a real (floating, integer or boolean) JAX array, dtype unchanged."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be an array of real numbers, got {type(x).__name__}")
    try:
        arr = x if isinstance(x, jax.Array) else jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`{name}` must be an array of real numbers, got {type(x).__name__}: {err}"
        ) from err
    dtype = arr.dtype
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or jnp.issubdtype(dtype, jnp.bool_)
    ):
        raise TypeError(f"`{name}` must have a real (floating, integer or bool) dtype, got {dtype}")
    return arr


def float_array(x: ArrayLike, name: str) -> jax.Array:
    """`x` as a floating JAX array: integer and boolean inputs become the default float."""
    arr = real_array(x, name)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(default_float())
    return arr


def int_array(x: ArrayLike, name: str) -> jax.Array:
    """`x` as an integer JAX array (indices, timesteps); TypeError for any other dtype."""
    if x is None or isinstance(x, (str, bytes, bool)):
        raise TypeError(f"`{name}` must be an array of integers, got {x!r}")
    try:
        arr = x if isinstance(x, jax.Array) else jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be an array of integers, got {type(x).__name__}: {err}") from err
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"`{name}` must have an integer dtype, got {arr.dtype}")
    return arr


def is_concrete(x: Any) -> bool:
    """True when the value of `x` is known now: not a tracer of an enclosing jit/vmap/grad."""
    return not isinstance(x, jax.core.Tracer)


def int_in_range(arr: jax.Array, name: str, low: int, high: int, what: str = "") -> None:
    """Every entry of a concrete integer array in [low, high); a tracer is not checked.

    The caller documents (and implements) what a traced out-of-range value does.
    """
    if not is_concrete(arr) or arr.size == 0:
        return
    with jax.ensure_compile_time_eval():  # a concrete array closed over by a jit trace stays concrete
        lo, hi = int(jnp.min(arr)), int(jnp.max(arr))
    if lo < low or hi >= high:
        bad = lo if lo < low else hi
        raise ValueError(f"`{name}` must have entries in [{low}, {high}){what}, got {bad}")


def out_dtype(*arrays: jax.Array) -> jnp.dtype:
    """The promoted floating dtype of the inputs; the default float if none is floating.

    Promotes the arrays themselves, not their dtypes, so a weakly typed Python-scalar argument
    (`mean_p=0.0`) does not widen bfloat16 data to float32.
    """
    floats = [a for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    if not floats:
        return default_float()
    return jnp.dtype(jnp.result_type(*floats))


def compute_dtype(*dtypes_or_arrays: Any) -> jnp.dtype:
    """The dtype to compute in: `out_dtype` of the inputs, widened to at least float32.

    bfloat16/float16/float8 inputs are computed in float32 and cast back by the caller.
    """
    dtypes = [getattr(d, "dtype", d) for d in dtypes_or_arrays]
    floats = [jnp.dtype(d) for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    dtype = jnp.result_type(*floats) if floats else default_float()
    if jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {name_a}.shape={a.shape} "
            f"and {name_b}.shape={b.shape} (no implicit broadcasting; broadcast explicitly)"
        )


def broadcasts_into(x: jax.Array, shape: Sequence[int], name: str, target: str) -> None:
    """`x` must broadcast to `shape` (the shape of the argument `target`) without changing it."""
    shape = tuple(shape)
    try:
        out = jnp.broadcast_shapes(x.shape, shape)
    except ValueError:
        out = None
    if out != shape:
        raise ValueError(
            f"`{name}` with shape {x.shape} must be a scalar or broadcastable to the shape "
            f"{shape} of `{target}` without changing it"
        )


def non_empty(x: jax.Array, name: str, what: str = "a mean over no samples is undefined") -> None:
    if x.size == 0:
        raise ValueError(f"`{name}` is empty (shape {x.shape}): {what}")


def batched(x: jax.Array, name: str, what: str = "it averages over the batch") -> None:
    """A batch `[B, ...]` with B >= 1."""
    if x.ndim < 1:
        raise ValueError(f"`{name}` must be a batch [B, ...] with a leading batch axis, got a scalar")
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch (shape {x.shape}): {what}")


def axes(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """`axis` (an int, a sequence of ints, or None for all) as sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"`{name}` must be an int, a tuple of ints or None, got {axis!r}")
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"`{name}`={axis!r} is out of range for an array of rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}`={axis!r} repeats an axis")
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------
# Keys.
# --------------------------------------------------------------------------------------------


def key(k: Any, name: str = "key") -> jax.Array:
    """A single PRNG key: typed (`jax.random.key`) or legacy `uint32[2]` (`jax.random.PRNGKey`)."""
    if k is None:
        raise TypeError(
            f"`{name}` must be a PRNG key such as jax.random.key(0), got None (genjax never "
            "chooses a random key for you)"
        )
    try:
        arr = k if isinstance(k, jax.Array) else jnp.asarray(k)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a PRNG key such as jax.random.key(0), got "
                        f"{type(k).__name__}") from err
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.shape:
            raise ValueError(f"`{name}` must be a single PRNG key, got a key array of shape "
                             f"{arr.shape} (split it, or vmap over it)")
        return arr
    if arr.dtype == jnp.uint32 and arr.shape == (2,):
        return arr
    raise TypeError(
        f"`{name}` must be a PRNG key such as jax.random.key(0), got an array of dtype "
        f"{arr.dtype} and shape {arr.shape}"
    )


# --------------------------------------------------------------------------------------------
# Static numbers.
# --------------------------------------------------------------------------------------------


def is_static_number(value: Any) -> bool:
    """True for Python/NumPy real numbers (checkable now); False for arrays and tracers."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low, high, low_open, high_open) -> str:
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    return f"{lo}, {hi}"


def number(value: Any, name: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, finite: bool = True) -> Any:
    """A real number in the interval; returns a Python float, or a scalar array as given.

    Python numbers are checked (NaN is always out of range; infinities unless `finite=False`).
    A scalar array or tracer is returned unchanged: its value is not known at trace time.
    Strings, booleans and None are a TypeError; arrays that are not scalars a ValueError.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if isinstance(value, numbers.Real):
        v = float(value)
        ok = not math.isnan(v) and (not finite or math.isfinite(v))
        if low is not None:
            ok = ok and (v > low if low_open else v >= low)
        if high is not None:
            ok = ok and (v < high if high_open else v <= high)
        if not ok:
            raise ValueError(
                f"`{name}` must be a {'finite ' if finite else ''}number in "
                f"{_interval(low, high, low_open, high_open)}, got {value!r}"
            )
        return v
    arr = real_array(value, name)
    if arr.ndim:
        raise ValueError(f"`{name}` must be a scalar, got an array of shape {arr.shape}")
    return arr


def integer(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """A Python int (or integer NumPy scalar) in [low, high]; 2.5, True, '3' are a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a Python int, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(
            f"`{name}` must be an int in [{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}], got {v}"
        )
    return v


def positive_int(value: Any, name: str) -> int:
    return integer(value, name, low=1)


def shape(value: Any, name: str = "shape") -> tuple[int, ...]:
    """A shape: an int or a sequence of non-negative Python ints (never truncated floats)."""
    items = (value,) if isinstance(value, numbers.Number) else value
    try:
        items = tuple(items)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a tuple of ints, got {value!r}") from err
    for d in items:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"`{name}` must be a tuple of ints, got {value!r} (entry {d!r})")
        if int(d) < 0:
            raise ValueError(f"`{name}` must have non-negative entries, got {value!r}")
    return tuple(int(d) for d in items)


def choice(value: Any, name: str, options: Sequence[str]) -> str:
    """One of the named options; the message lists them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"`{name}` must be one of {list(options)}, got {value!r}")
    return value
