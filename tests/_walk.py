"""Helpers shared by the bad-input walks (tests/test_bad_inputs_*.py, issue 15).

A walk has, per public name, one valid call `CALLS[name] = (fn, kwargs)`; each case replaces one
argument of it and asserts a clear error naming that argument, or finite values and gradients.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def call(calls, name, **override):
    """`CALLS[name]` with some keyword arguments replaced."""
    fn, kwargs = calls[name]
    return fn(**{**kwargs, **override})


def raises(calls, exc, arg, name, **override):
    """The call with `override` raises `exc` whose message names `arg` in backticks."""
    with pytest.raises(exc, match=f"`{re.escape(arg)}`"):
        call(calls, name, **override)


def finite(tree) -> bool:
    """Every inexact leaf of `tree` is finite (checked in float32)."""
    return all(bool(np.all(np.isfinite(np.asarray(jnp.asarray(leaf, jnp.float32)))))
               for leaf in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact))


def assert_finite_value_and_grads(fn, args, dtype):
    """sum(fn(*args)) and its gradient in every argument are finite, the gradients in `dtype`."""
    args = [jnp.asarray(a, dtype) for a in args]

    def total(*a):
        return jnp.sum(fn(*a).astype(jnp.float32))

    value, grads = jax.value_and_grad(total, argnums=tuple(range(len(args))))(*args)
    assert bool(jnp.isfinite(value)), value
    for i, g in enumerate(grads):
        assert g.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(g))), (i, g)
