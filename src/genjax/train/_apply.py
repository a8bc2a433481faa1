"""Applying compiled functions to data: fixed-shape batched application, compile-then-time."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from genjax import _backend, _checks

PyTree = Any


def _pad_rows(x: Any, rows: int) -> Any:
    """`x` with `rows` rows of zeros appended along axis 0 (NumPy stays NumPy, JAX stays JAX)."""
    if isinstance(x, jax.Array):
        return jnp.concatenate([x, jnp.zeros((rows, *x.shape[1:]), x.dtype)])
    return np.concatenate([x, np.zeros((rows, *x.shape[1:]), x.dtype)])


def map_batched(fn: Callable[[PyTree], PyTree], data: PyTree, *, batch_size: int) -> PyTree:
    """`fn` applied to all rows of `data`, in batches of exactly `batch_size` rows.

    `data` is an array or a pytree of arrays that share their leading axis of N rows; `fn` maps a
    batch (the same pytree, `batch_size` rows) to a pytree of arrays with `batch_size` rows, each
    output row a function of the same input row only (an encoder, a classifier, per-example
    errors; not a batch statistic). The rows are fed in order; the last batch is filled up with
    rows of zeros, so `fn` always sees one shape and a jitted `fn` compiles once whatever N is;
    the outputs of the filler rows are dropped, so no row is ever left out or repeated. Batch
    i + 1 is dispatched before batch i is copied to the host.

    Args:
        fn: the function of one batch, typically jitted (close over parameters:
            `lambda x: predict(params, x)` with a jitted `predict` does not recompile).
        data: an array [N, ...] or a pytree of arrays [N, ...] (NumPy arrays stay on the host
            until `fn` takes them).
        batch_size: rows per call of `fn` (a positive Python int).

    Returns:
        The outputs for all N rows, as NumPy arrays [N, ...] in the structure of `fn`'s output.
        With N = 0, `fn` is not called: its output shapes come from `jax.eval_shape`.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> square = jax.jit(lambda x: x * x)
        >>> map_batched(square, np.arange(5.0), batch_size=2)
        array([ 0.,  1.,  4.,  9., 16.], dtype=float32)
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be a function of one batch, got {type(fn).__name__}")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    leaves, treedef = jax.tree.flatten(data)
    if not leaves:
        raise ValueError("`data` must hold at least one array, got an empty pytree")
    for leaf in leaves:
        if np.ndim(leaf) < 1:
            raise ValueError(f"`data` arrays need a leading axis of rows, got an array of shape {np.shape(leaf)}")
    n = int(np.shape(leaves[0])[0])
    if any(np.shape(leaf)[0] != n for leaf in leaves):
        raise ValueError(f"`data` arrays must share their leading axis, got shapes {[np.shape(x) for x in leaves]}")
    leaves = [x if isinstance(x, (np.ndarray, jax.Array)) else np.asarray(x) for x in leaves]

    def checked(out: PyTree) -> tuple[list[Any], Any]:
        out_leaves, out_def = jax.tree.flatten(out)
        for leaf in out_leaves:
            if np.ndim(leaf) < 1 or np.shape(leaf)[0] != batch_size:
                raise ValueError(f"`fn` must return arrays with one row per input row ({batch_size}), got an "
                                 f"output of shape {np.shape(leaf)}")
        return out_leaves, out_def

    if n == 0:
        spec = jax.eval_shape(fn, jax.tree.unflatten(treedef, [
            jax.ShapeDtypeStruct((batch_size, *x.shape[1:]), x.dtype) for x in leaves]))
        out_leaves, out_def = checked(spec)
        return jax.tree.unflatten(out_def, [np.zeros((0, *s.shape[1:]), s.dtype) for s in out_leaves])

    parts: list[list[np.ndarray]] = []
    out_def = None

    def collect(pending: tuple[PyTree, int]) -> None:
        nonlocal out_def
        out, valid = pending
        out_leaves, out_def = checked(out)
        parts.append([np.asarray(x)[:valid] for x in jax.device_get(out_leaves)])

    pending = None
    for start in range(0, n, batch_size):
        chunk = [x[start:start + batch_size] for x in leaves]
        valid = int(chunk[0].shape[0])
        if valid < batch_size:
            chunk = [_pad_rows(x, batch_size - valid) for x in chunk]
        out = fn(jax.tree.unflatten(treedef, chunk))
        if pending is not None:
            collect(pending)
        pending = (out, valid)
    collect(pending)
    return jax.tree.unflatten(out_def, [np.concatenate(column) for column in zip(*parts)])


def time_compiled(fn: Callable[..., PyTree], calls: Sequence[tuple[Any, ...]]) -> tuple[list[PyTree], float]:
    """Compiles `fn` once, ahead of time, then runs and times each call.

    `jax.jit(fn)` is lowered and compiled for the first call's arguments, outside the timing;
    every call (all with the arguments' shapes and dtypes of the first) then runs the compiled
    program and is waited for with `jax.block_until_ready`. So the time is the run time of the
    program alone: no tracing, no compilation, no asynchronous dispatch left unfinished.

    Args:
        fn: a JAX-traceable function (compose any post-processing, e.g. a decoder, into it to
            time it too).
        calls: the argument tuples, one per call (at least one).

    Returns:
        `(outputs, seconds)`: the output of each call (device arrays, finished) and the total
        wall-clock seconds of the calls.
    """
    import time

    if not callable(fn):
        raise TypeError(f"`fn` must be a function, got {type(fn).__name__}")
    calls = list(calls)
    if not calls or not all(isinstance(args, tuple) for args in calls):
        raise ValueError(f"`calls` must be a non-empty sequence of argument tuples, got {calls!r}"[:300])
    compiled = _backend.jit(fn).lower(*calls[0]).compile()
    outputs, seconds = [], 0.0
    for args in calls:
        start = time.perf_counter()
        outputs.append(jax.block_until_ready(compiled(*args)))
        seconds += time.perf_counter() - start
    return outputs, seconds
