"""Bad and extreme inputs for every public name of genjax.vq (issue 15).

The walk: each public name has a valid call (`CALLS`), and every case below replaces one argument
of it. A case asserts either a clear error (a ValueError/TypeError whose message names the
argument, in backticks) or a finite result with a finite gradient. `test_the_walk_covers_all`
asserts that every name of `vq.__all__` is walked by every kind of case that applies to it.
Reference values are closed forms (stated where used).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import vq
from tests import _walk as walk

K, D = 5, 3
RNG = np.random.default_rng(0)
Z = jnp.asarray(RNG.normal(size=(4, D)), jnp.float32)  # [N, D]
CB = jnp.asarray(RNG.normal(size=(K, D)), jnp.float32)  # [K, D]
IDX = vq.nearest_code(Z, CB)  # [N]
E = vq.lookup(CB, IDX)  # [N, D]
STATE = vq.ema_init(CB)
KEY = jax.random.key(0)
LEVELS = (3, 4, 5)  # FSQ levels for the D = 3 latents
BOOKS = jnp.stack([CB, CB * 0.3])  # [Q, K, D]: two residual levels
RSTATE = jax.vmap(vq.ema_init)(BOOKS)
RIDX = vq.residual_quantize(Z, BOOKS)[1]  # [N, Q]


def _state_from_fields(**fields):
    return vq.ema_update(vq.EmaCodebook(**fields), Z, IDX)


# name -> (function, the keyword arguments of a valid call). EmaCodebook, a state class, is walked
# through its use: a state built from bad fields is given to ema_update.
CALLS = {
    "quantize": (lambda **a: vq.quantize(**a)[0], dict(z=Z, codebook=CB)),
    "nearest_code": (vq.nearest_code, dict(z=Z, codebook=CB)),
    "lookup": (vq.lookup, dict(codebook=CB, indices=IDX)),
    "codebook_loss": (vq.codebook_loss, dict(z=Z, e_k=E)),
    "commitment_loss": (vq.commitment_loss, dict(z=Z, e_k=E)),
    "vq_loss": (vq.vq_loss, dict(z=Z, e_k=E, beta=0.25)),
    "EmaCodebook": (_state_from_fields, STATE._asdict()),
    "ema_init": (vq.ema_init, dict(codebook=CB)),
    "ema_update": (vq.ema_update, dict(state=STATE, z=Z, indices=IDX, decay=0.99, eps=1e-5)),
    "restart_dead_codes": (vq.restart_dead_codes, dict(key=KEY, state=STATE, z=Z, threshold=1.0)),
    "codebook_usage": (vq.codebook_usage, dict(indices=IDX, num_codes=K)),
    "perplexity": (vq.perplexity, dict(indices=IDX, num_codes=K)),
    "fsq": (lambda **a: vq.fsq(**a)[0], dict(z=Z, levels=LEVELS)),
    "fsq_codes_to_indices": (vq.fsq_codes_to_indices, dict(codes=Z, levels=LEVELS)),
    "fsq_indices_to_codes": (vq.fsq_indices_to_codes, dict(indices=IDX, levels=LEVELS)),
    "lfq": (lambda **a: vq.lfq(**a)[0], dict(z=Z)),
    "lfq_indices_to_codes": (vq.lfq_indices_to_codes, dict(indices=IDX, dim=D)),
    "lfq_entropy_penalty": (lambda **a: vq.lfq_entropy_penalty(**a)[0],
                            dict(z=Z, temperature=0.5, diversity_weight=1.0, chunk_size=4)),
    "residual_quantize": (lambda **a: vq.residual_quantize(**a)[0], dict(z=Z, codebooks=BOOKS)),
    "quantizer_dropout": (vq.quantizer_dropout, dict(key=KEY, shape=(4,), num_levels=2)),
    "residual_ema_update": (vq.residual_ema_update, dict(state=RSTATE, z=Z, indices=RIDX, decay=0.99, eps=1e-5)),
    "rotation_trick": (vq.rotation_trick, dict(z=Z, e_k=E)),
    "kmeans_plus_plus_init": (vq.kmeans_plus_plus_init, dict(key=KEY, z=Z, num_codes=K)),
}

# Arguments by kind.
REAL_ARRAYS = {  # name -> the real-array arguments (latents, codes)
    "quantize": ["z", "codebook"], "nearest_code": ["z", "codebook"], "lookup": ["codebook"],
    "codebook_loss": ["z", "e_k"], "commitment_loss": ["z", "e_k"], "vq_loss": ["z", "e_k"],
    "ema_init": ["codebook"], "ema_update": ["z"], "restart_dead_codes": ["z"],
    "fsq": ["z"], "fsq_codes_to_indices": ["codes"], "lfq": ["z"], "lfq_entropy_penalty": ["z"],
    "residual_quantize": ["z", "codebooks"], "residual_ema_update": ["z"], "rotation_trick": ["z", "e_k"],
    "kmeans_plus_plus_init": ["z"],
}
INDEX_ARRAYS = {"lookup": ["indices"], "ema_update": ["indices"], "codebook_usage": ["indices"],
                "perplexity": ["indices"], "fsq_indices_to_codes": ["indices"],
                "lfq_indices_to_codes": ["indices"], "residual_ema_update": ["indices"]}
STATES = {"ema_update": "state", "restart_dead_codes": "state", "residual_ema_update": "state"}
KEYS = {"restart_dead_codes": "key", "quantizer_dropout": "key", "kmeans_plus_plus_init": "key"}
# static numbers: name -> {argument: (an out-of-range value, ...)}; NaN, strings, booleans and
# None are added to every one of them.
STATIC_NUMBERS = {
    "vq_loss": {"beta": (-0.25, float("inf"))},
    "ema_update": {"decay": (-0.1, 1.0, 1.5, float("inf")), "eps": (-1e-5, float("inf"))},
    "restart_dead_codes": {"threshold": (-1.0, float("inf"))},
    "lfq_entropy_penalty": {"temperature": (0.0, -1.0, float("inf")), "diversity_weight": (-1.0, float("inf"))},
    "residual_ema_update": {"decay": (-0.1, 1.0), "eps": (-1e-5,)},
}
STATIC_INTS = {"codebook_usage": ["num_codes"], "perplexity": ["num_codes"], "lfq_indices_to_codes": ["dim"],
               "lfq_entropy_penalty": ["chunk_size"], "quantizer_dropout": ["num_levels"],
               "kmeans_plus_plus_init": ["num_codes"]}
FLAGS = {"quantize": ["exact"], "nearest_code": ["exact"], "residual_quantize": ["exact"]}
# wrong shapes: name -> [(argument, value)]
WRONG_SHAPES = {
    "quantize": [("z", jnp.zeros((4, D + 1))), ("z", jnp.zeros(())), ("codebook", jnp.zeros((K, D, 1))),
                 ("codebook", jnp.zeros((0, D)))],
    "nearest_code": [("z", jnp.zeros((4, 1))), ("codebook", jnp.zeros((D,)))],
    "lookup": [("codebook", jnp.zeros((K,)))],
    "codebook_loss": [("e_k", jnp.zeros((3, D)))],
    "commitment_loss": [("e_k", jnp.zeros((4, D, 1)))],
    "vq_loss": [("e_k", jnp.zeros((4,))), ("beta", jnp.ones((2,)))],
    "EmaCodebook": [("hidden_count", jnp.zeros((K + 1,))), ("hidden_sum", jnp.zeros((K, D + 1))),
                    ("cluster_size", jnp.zeros((K, 1))), ("codebook", jnp.zeros((K,))),
                    ("count", jnp.zeros((2,), jnp.int32))],
    "ema_init": [("codebook", jnp.zeros((2, 3, 4)))],
    "ema_update": [("z", jnp.zeros((4, D + 1))), ("indices", jnp.zeros((3,), jnp.int32))],
    "restart_dead_codes": [("z", jnp.zeros((4, D + 2)))],
    "fsq": [("z", jnp.zeros((4, D + 1))), ("z", jnp.zeros(()))],
    "fsq_codes_to_indices": [("codes", jnp.zeros((4, 2)))],
    "lfq": [("z", jnp.zeros(())), ("z", jnp.zeros((4, 32)))],
    "lfq_entropy_penalty": [("z", jnp.zeros((4, 0))), ("z", jnp.zeros(()))],
    "residual_quantize": [("codebooks", jnp.zeros((K, D))), ("z", jnp.zeros((4, D + 1)))],
    "residual_ema_update": [("z", jnp.zeros((4, D + 1))), ("indices", jnp.zeros((4,), jnp.int32))],
    "rotation_trick": [("e_k", jnp.zeros((4, D + 1))), ("z", jnp.zeros(()))],
    "kmeans_plus_plus_init": [("z", jnp.zeros(()))],
}
ANY_SHAPE = {"codebook_usage", "perplexity", "fsq_indices_to_codes", "lfq_indices_to_codes",
             "quantizer_dropout"}  # index arrays of any shape, or no array at all
OUT_OF_RANGE_INDICES = {"lookup": "indices", "ema_update": "indices", "codebook_usage": "indices",
                        "perplexity": "indices"}
# functions with a batch of latents (`z` or `indices`), and what an empty batch must give
EMPTY = {
    "quantize": dict(z=jnp.zeros((0, D))), "nearest_code": dict(z=jnp.zeros((0, 2, D))),
    "lookup": dict(indices=jnp.zeros((0,), jnp.int32)),
    "codebook_loss": dict(z=jnp.zeros((0, D)), e_k=jnp.zeros((0, D))),
    "commitment_loss": dict(z=jnp.zeros((0, D)), e_k=jnp.zeros((0, D))),
    "vq_loss": dict(z=jnp.zeros((0, D)), e_k=jnp.zeros((0, D))),
    "ema_update": dict(z=jnp.zeros((0, D)), indices=jnp.zeros((0,), jnp.int32)),
    "restart_dead_codes": dict(z=jnp.zeros((0, D))),  # nothing to restart from: ValueError
    "codebook_usage": dict(indices=jnp.zeros((0,), jnp.int32)),
    "perplexity": dict(indices=jnp.zeros((0,), jnp.int32)),
    "fsq": dict(z=jnp.zeros((0, D))), "fsq_codes_to_indices": dict(codes=jnp.zeros((0, D))),
    "fsq_indices_to_codes": dict(indices=jnp.zeros((0,), jnp.int32)), "lfq": dict(z=jnp.zeros((0, D))),
    "lfq_indices_to_codes": dict(indices=jnp.zeros((0,), jnp.int32)),
    "lfq_entropy_penalty": dict(z=jnp.zeros((0, D))),  # a batch mean of nothing: ValueError
    "residual_quantize": dict(z=jnp.zeros((0, D))),
    "residual_ema_update": dict(z=jnp.zeros((0, D)), indices=jnp.zeros((0, 2), jnp.int32)),
    "rotation_trick": dict(z=jnp.zeros((0, D)), e_k=jnp.zeros((0, D))),
    "kmeans_plus_plus_init": dict(z=jnp.zeros((0, D))),  # no latents to choose from: ValueError
}
NOT_BATCHED = {"EmaCodebook", "ema_init", "quantizer_dropout"}  # no batch argument
EMPTY_IS_AN_ERROR = {"restart_dead_codes", "lfq_entropy_penalty", "kmeans_plus_plus_init"}


def _call(name, **override):
    return walk.call(CALLS, name, **override)


def _raises(exc, arg, name, **override):
    walk.raises(CALLS, exc, arg, name, **override)


_finite = walk.finite


def test_the_walk_covers_all_public_names():
    public = set(vq.__all__)
    assert set(CALLS) == public, (f"walk these new public names too: {sorted(public - set(CALLS))}; "
                                  f"no longer public: {sorted(set(CALLS) - public)}")
    arrays = set(REAL_ARRAYS) | set(INDEX_ARRAYS) | set(STATES) | {"EmaCodebook", "quantizer_dropout"}
    assert arrays == public, public - arrays  # every name gets wrong dtypes
    assert set(WRONG_SHAPES) | ANY_SHAPE == public
    assert set(EMPTY) | NOT_BATCHED == public
    integer_only = {"EmaCodebook", "codebook_usage", "perplexity", "fsq_indices_to_codes", "lfq_indices_to_codes",
                    "quantizer_dropout"}
    assert set(EXTREME) | set(EXTREME_BF16) | integer_only == public


def test_every_valid_call_runs():
    for name in CALLS:
        assert _finite(_call(name)), name


# ---------------------------------------------------------------------------- wrong dtypes

BAD_REAL = [("complex", jnp.ones((4, D), jnp.complex64)), ("string", "abc"), ("None", None),
            ("strings", np.array([["a", "b", "c"]]))]


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in REAL_ARRAYS.items() for a in args])
@pytest.mark.parametrize("label,bad", BAD_REAL, ids=[b[0] for b in BAD_REAL])
def test_real_arrays_reject_complex_strings_and_none(name, arg, label, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in INDEX_ARRAYS.items() for a in args])
@pytest.mark.parametrize("bad", [IDX.astype(jnp.float32), "0", None, True, IDX.astype(jnp.complex64)],
                         ids=["float", "string", "None", "bool", "complex"])
def test_index_arrays_must_be_integers(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", sorted(STATES.items()))
@pytest.mark.parametrize("bad", [None, {"codebook": CB}, tuple(STATE)], ids=["None", "dict", "tuple"])
def test_states_must_be_ema_codebooks(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("field,bad", [("hidden_count", jnp.zeros((K,), jnp.int32)), ("hidden_sum", None),
                                       ("cluster_size", jnp.zeros((K,), jnp.complex64)), ("cluster_size", [0.0] * K)])
def test_ema_codebook_fields_must_be_floating_arrays(field, bad):
    _raises(TypeError, f"state.{field}", "EmaCodebook", **{field: bad})


def test_an_ema_codebook_restored_as_numpy_arrays_is_accepted():
    """A checkpoint may restore the state's leaves as NumPy arrays: the same update as from JAX ones."""
    restored = vq.EmaCodebook(*(np.asarray(leaf) for leaf in STATE))
    np.testing.assert_array_equal(vq.ema_update(restored, Z, IDX).codebook, vq.ema_update(STATE, Z, IDX).codebook)


@pytest.mark.parametrize("bad", [None, 0, "key", jnp.zeros((3,), jnp.uint32), jax.random.split(KEY, 2)],
                         ids=["None", "int", "string", "uint32[3]", "two keys"])
def test_keys_are_required_and_checked(bad):
    for name, arg in KEYS.items():
        _raises((TypeError, ValueError), arg, name, **{arg: bad})


def test_integer_latents_are_promoted_as_the_shared_policy_says():
    """genjax._checks: integer and boolean latents become float32, the result is the float call's."""
    z_int = jnp.array([[0, 1, 2], [3, 4, 5]])
    cb = jnp.arange(15.0).reshape(5, 3)
    z_q, idx = vq.quantize(z_int, cb)
    assert z_q.dtype == jnp.float32 and idx.tolist() == [0, 1]
    assert float(vq.codebook_loss(z_int, jnp.zeros((2, 3), jnp.int32))) == pytest.approx(55 / 6)  # mean of squares
    assert vq.ema_init(jnp.ones((2, 2), jnp.bool_)).codebook.dtype == jnp.float32


# ---------------------------------------------------------------------------- wrong shapes


@pytest.mark.parametrize("name,arg,bad", [(n, a, v) for n, cases in WRONG_SHAPES.items() for a, v in cases])
def test_wrong_shapes_are_errors_naming_the_argument(name, arg, bad):
    arg_named = f"state.{arg}" if name == "EmaCodebook" else arg
    if name == "EmaCodebook" and arg in ("codebook",):
        arg_named = "state.codebook"
    _raises(ValueError, arg_named, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", sorted(OUT_OF_RANGE_INDICES.items()))
@pytest.mark.parametrize("bad", [K, -1, 10**6], ids=["K", "-1", "1e6"])
def test_concrete_indices_out_of_range_are_errors(name, arg, bad):
    _raises(ValueError, arg, name, **{arg: IDX.at[0].set(bad)})


# ---------------------------------------------------------------------------- static arguments

GENERIC_BAD_NUMBERS = [(float("nan"), ValueError), ("0.3", TypeError), (True, TypeError), (False, TypeError),
                       (None, TypeError), (jnp.zeros((2,)), ValueError)]


@pytest.mark.parametrize("name,arg,bad,exc", [
    (n, a, v, e) for n, args in STATIC_NUMBERS.items() for a, out in args.items()
    for v, e in [(o, ValueError) for o in out] + GENERIC_BAD_NUMBERS])
def test_static_numbers_outside_their_domain_are_errors(name, arg, bad, exc):
    _raises(exc, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in STATIC_NUMBERS.items() for a in args])
def test_static_numbers_may_be_traced(name, arg):
    """A traced number cannot be checked: the call still runs and is finite at an in-range value."""
    value = CALLS[name][1][arg]
    out = jax.jit(lambda v: _call(name, **{arg: v}))(jnp.float32(value))
    assert _finite(out)


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in STATIC_INTS.items() for a in args])
@pytest.mark.parametrize("bad,exc", [(2.5, TypeError), (True, TypeError), ("5", TypeError), (None, TypeError),
                                     (np.float32(5.0), TypeError), (0, ValueError), (-1, ValueError)])
def test_static_integers_are_python_ints_never_truncated(name, arg, bad, exc):
    _raises(exc, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in FLAGS.items() for a in args])
@pytest.mark.parametrize("bad", [1, "yes", None, jnp.array(True)], ids=["1", "yes", "None", "array"])
def test_flags_are_python_bools(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


# ---------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_batches(name):
    """Closed forms: no latents -> empty indices/z_q, losses 0, usage 0, perplexity 1, codebook
    unchanged; restarting codes from no latents is an error."""
    if name in EMPTY_IS_AN_ERROR:
        _raises(ValueError, "z", name, **EMPTY[name])
        return
    out = _call(name, **EMPTY[name])
    assert _finite(out)
    if name in ("codebook_loss", "commitment_loss", "vq_loss"):
        assert float(out) == 0.0
    elif name == "perplexity":
        assert float(out) == 1.0
    elif name == "codebook_usage":
        assert out.tolist() == [0] * K
    elif name == "ema_update":
        np.testing.assert_array_equal(out.codebook, CB)
    elif name == "residual_ema_update":
        np.testing.assert_array_equal(out.codebook, BOOKS)
    else:
        assert out.size == 0


# ---------------------------------------------------------------------------- extreme values


def _grad_of(name, dtype, scale):
    """The value and the gradient of a scalar made from `name`'s output, in the argument(s) a user
    differentiates, at latents of magnitude `scale` in `dtype` (codebook in float32)."""
    z = (Z * scale).astype(dtype)
    e = (E * scale).astype(dtype)
    cb = CB * scale
    if name == "quantize":
        return jax.value_and_grad(lambda z: jnp.sum(vq.quantize(z, cb)[0].astype(jnp.float32)))(z)
    if name == "nearest_code":
        return vq.nearest_code(z, cb), jnp.zeros(())
    if name == "lookup":
        return jax.value_and_grad(lambda c: jnp.sum(vq.lookup(c, IDX)))(cb)
    if name in ("codebook_loss", "commitment_loss"):
        f = getattr(vq, name)
        return jax.value_and_grad(lambda z, e: f(z, e).astype(jnp.float32), argnums=(0, 1))(z, e)
    if name == "vq_loss":
        return jax.value_and_grad(lambda z, e, b: vq.vq_loss(z, e, b).astype(jnp.float32),
                                  argnums=(0, 1, 2))(z, e, jnp.float32(0.25))
    if name == "ema_init":
        return vq.ema_init(cb.astype(dtype)), jnp.zeros(())
    if name == "ema_update":
        idx = vq.nearest_code(z, cb)
        return vq.ema_update(vq.ema_init(cb), z, idx), jnp.zeros(())
    if name == "restart_dead_codes":
        return vq.restart_dead_codes(KEY, STATE, z), jnp.zeros(())
    raise KeyError(name)


EXTREME = ["quantize", "nearest_code", "lookup", "codebook_loss", "commitment_loss", "vq_loss", "ema_init",
           "ema_update", "restart_dead_codes"]


@pytest.mark.parametrize("name", EXTREME)
@pytest.mark.parametrize("dtype,scale", [(jnp.float32, 1e4), (jnp.float32, -1e4), (jnp.bfloat16, 1e4),
                                         (jnp.float16, 100.0), (jnp.float16, 1e-4)],
                         ids=["f32+1e4", "f32-1e4", "bf16+1e4", "f16x100", "f16x1e-4"])
def test_extreme_values_give_finite_values_and_gradients(name, dtype, scale):
    """float16 holds at most 65504: latents of 100 keep the mean squared error (~ 2e4) in range,
    1e4 could not (its square is not a float16). Gradients in every input dtype."""
    value, grad = _grad_of(name, dtype, scale)
    assert _finite(value) and _finite(grad)


EXTREME_BF16 = ["fsq", "fsq_codes_to_indices", "lfq", "lfq_entropy_penalty", "residual_quantize",
                "residual_ema_update", "rotation_trick", "kmeans_plus_plus_init"]


@jax.jit
def _extreme_bf16_values_and_grads(z, e, books):
    """The values of the newer functions (issue 20), and the gradients of those a user
    differentiates, at bfloat16 latents `z`; one program for all of them (one compile)."""
    losses = {
        "fsq": lambda z: jnp.sum(vq.fsq(z, LEVELS)[0].astype(jnp.float32)),
        "lfq": lambda z: jnp.sum(vq.lfq(z)[0].astype(jnp.float32)),
        "lfq_entropy_penalty": lambda z: vq.lfq_entropy_penalty(z, 0.5, chunk_size=4)[0],
        "residual_quantize": lambda z: jnp.sum(vq.residual_quantize(z, books)[0].astype(jnp.float32)),
        "rotation_trick": lambda z: jnp.sum(vq.rotation_trick(z, e).astype(jnp.float32)),
    }
    out = {name: jax.value_and_grad(f)(z) for name, f in losses.items()}
    out["fsq_codes_to_indices"] = vq.fsq_codes_to_indices(z, LEVELS)
    out["residual_ema_update"] = vq.residual_ema_update(jax.vmap(vq.ema_init)(books), z,
                                                        vq.residual_quantize(z, books)[1])
    out["kmeans_plus_plus_init"] = vq.kmeans_plus_plus_init(KEY, z, K, num_iters=1)
    return out


def test_extreme_bfloat16_values_give_finite_values_and_gradients_in_the_newer_functions():
    """bfloat16 latents of 1e4 (computed in float32): finite values and gradients."""
    scale = 1e4
    out = _extreme_bf16_values_and_grads((Z * scale).astype(jnp.bfloat16), (E * scale).astype(jnp.bfloat16),
                                         BOOKS * scale)
    assert sorted(out) == sorted(EXTREME_BF16)
    for name, value in out.items():
        assert _finite(value), name


def test_new_functions_check_their_ranges_and_options():
    """Concrete indices and counts out of range, bad levels and options: errors naming the argument."""
    with pytest.raises(ValueError, match="`indices`"):
        vq.fsq_indices_to_codes(jnp.array([60]), LEVELS)  # 3 * 4 * 5 = 60 codes
    with pytest.raises(ValueError, match="`indices`"):
        vq.lfq_indices_to_codes(jnp.array([8]), 3)
    for bad in (K, -2):
        with pytest.raises(ValueError, match="`indices`"):
            vq.residual_ema_update(RSTATE, Z, RIDX.at[0, 1].set(bad))
    assert vq.residual_ema_update(RSTATE, Z, RIDX.at[0, 1].set(-1)).codebook.shape == BOOKS.shape  # -1: dropped
    with pytest.raises(ValueError, match="`num_active`"):
        vq.residual_quantize(Z, BOOKS, jnp.array([0, 1, 2, 3]))  # Q = 2
    with pytest.raises(ValueError, match="`num_active`"):
        vq.residual_quantize(Z, BOOKS, jnp.array([1, 2]))  # not a prefix of [4]
    with pytest.raises(TypeError, match="`num_active`"):
        vq.residual_quantize(Z, BOOKS, jnp.ones((4,)))
    for bad, exc in (((3, 2, 5), ValueError), ((), ValueError), ((3, 2.5, 4), TypeError), (3, TypeError),
                     ((3, True, 4), TypeError), ((2**16, 2**16), ValueError)):
        with pytest.raises(exc, match="`levels`"):
            vq.fsq(jnp.zeros((1, 3)), bad)
    with pytest.raises(ValueError, match="`batch_entropy`"):
        vq.lfq_entropy_penalty(Z, batch_entropy="approximate")
    with pytest.raises(ValueError, match="batch_entropy='marginal'"):
        vq.lfq_entropy_penalty(jnp.zeros((2, 31)))
    with pytest.raises(ValueError, match="`min_levels`"):
        vq.quantizer_dropout(KEY, (3,), 2, min_levels=3)
    with pytest.raises(ValueError, match="`num_iters`"):
        vq.kmeans_plus_plus_init(KEY, Z, 2, num_iters=-1)
    with pytest.raises(ValueError, match="`state.codebook`"):
        vq.residual_ema_update(STATE, Z, RIDX)  # an unstacked state
    with pytest.raises(ValueError, match="`state.count`"):
        vq.residual_ema_update(RSTATE._replace(count=jnp.zeros((), jnp.int32)), Z, RIDX)


def test_half_precision_latents_are_assigned_like_their_float32_values():
    """bfloat16/float16 latents are compared in float32: the same indices as the upcast latents."""
    for dtype in (jnp.bfloat16, jnp.float16):
        z = (Z * 30 + 100).astype(dtype)
        cb = (CB * 30 + 100).astype(dtype)
        np.testing.assert_array_equal(vq.nearest_code(z, cb), vq.nearest_code(z.astype(jnp.float32),
                                                                               cb.astype(jnp.float32)))
        assert vq.quantize(z, cb)[0].dtype == dtype
