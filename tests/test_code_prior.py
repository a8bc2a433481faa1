"""genjax.nn.CodePrior (the causal Transformer over VQ codes) and genjax.nn.sample_codes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import errors as flax_errors

from genjax import nn

K, L = 11, 9
PRIOR = nn.CodePrior(num_codes=K, length=L, width=16, num_layers=2, num_heads=2)
APPLY = jax.jit(PRIOR.apply)  # one compile per shape for the whole file
N = 8  # the batch of every call


@pytest.fixture(scope="module")
def params():
    return jax.jit(PRIOR.init)(jax.random.key(0), jnp.zeros((1, L), jnp.int32))["params"]


def _tokens(seed):
    return jnp.asarray(np.random.default_rng(seed).integers(0, K, (N, L)), jnp.int32)


def test_logits_have_one_row_of_k_per_position(params):
    logits = APPLY({"params": params}, _tokens(0))
    assert logits.shape == (N, L, K) and logits.dtype == jnp.float32
    assert params["token_embed"]["embedding"].shape == (K + 1, 16)  # K codes and the start token
    assert params["position_embed"].shape == (L, 16)
    empty = jax.eval_shape(PRIOR.apply, {"params": params}, jax.ShapeDtypeStruct((0, L), jnp.int32))
    assert empty.shape == (0, L, K)


def test_logits_at_position_i_are_exactly_independent_of_tokens_from_i_on(params):
    """The causal claim, bit for bit: p(c_i | c_<i) may not see c_i or anything after it (masked
    scores get weight exp(-1e9 - max) = 0 exactly). Changing tokens i.. changes position i + 1 on."""
    tokens = _tokens(1)
    logits = np.asarray(APPLY({"params": params}, tokens))
    rng = np.random.default_rng(2)
    for i in range(L):
        changed = tokens.at[:, i:].set((tokens[:, i:] + rng.integers(1, K, (N, L - i))) % K)
        new = np.asarray(APPLY({"params": params}, changed))
        np.testing.assert_array_equal(new[:, : i + 1], logits[:, : i + 1])
        if i + 1 < L:
            assert not np.allclose(new[:, i + 1], logits[:, i + 1])


def test_decode_step_with_the_cache_equals_the_full_pass(params):
    tokens = _tokens(3)
    full = APPLY({"params": params}, tokens)
    step = jax.jit(lambda c, prev, i: PRIOR.apply({"params": params}, c, prev, i, method=nn.CodePrior.decode_step))
    cache, previous = PRIOR.empty_cache(N), jnp.full((N,), K, jnp.int32)
    for i in range(L):
        logits, cache = step(cache, previous, i)
        np.testing.assert_allclose(logits, full[:, i], rtol=1e-5, atol=1e-5)
        previous = tokens[:, i]


def test_sampler_draws_codes_in_range_deterministically_per_key(params):
    a = nn.sample_codes(jax.random.key(5), PRIOR, params, N)
    assert a.shape == (N, L) and a.dtype == jnp.int32
    assert int(a.min()) >= 0 and int(a.max()) < K
    np.testing.assert_array_equal(nn.sample_codes(jax.random.key(5), PRIOR, params, N), a)
    assert not np.array_equal(nn.sample_codes(jax.random.key(6), PRIOR, params, N), a)


def test_sampler_draws_what_the_full_pass_would_draw(params):
    """Reference: the same ancestral sampling without the cache (the whole network on the whole
    sequence at each position), with the sampler's key for each position."""
    key = jax.random.key(7)
    codes = np.asarray(nn.sample_codes(key, PRIOR, params, N))
    tokens = np.zeros((N, L), np.int32)
    for i in range(L):
        logits = APPLY({"params": params}, jnp.asarray(tokens))[:, i]
        tokens[:, i] = jax.random.categorical(jax.random.fold_in(key, i), logits, axis=-1)
    np.testing.assert_array_equal(codes, tokens)


def test_a_few_training_steps_lower_the_cross_entropy(params):
    tokens = jnp.tile(jnp.arange(L, dtype=jnp.int32) % K, (N, 1))  # one fixed sequence: learnable
    tx = optax.adam(1e-2)

    def loss(p):
        return jnp.mean(nn.cross_entropy_loss(PRIOR.apply({"params": p}, tokens), tokens))

    @jax.jit
    def step(p, opt):
        value, grads = jax.value_and_grad(loss)(p)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, value

    p, opt = params, tx.init(params)
    losses = []
    for _ in range(20):
        p, opt, value = step(p, opt)
        losses.append(float(value))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


DROPPY = nn.CodePrior(num_codes=K, length=L, width=16, num_layers=2, num_heads=2, dropout=0.5)


def test_dropout_is_identity_when_deterministic_and_a_function_of_the_key_in_training(params):
    """Dropout adds no parameters, so the rate-0.5 prior takes the same params; deterministic
    (the default, what `nll` and sampling use) it gives the rate-0 numbers bit for bit; rate 0
    in training mode is the identity too (flax's Dropout returns its input at rate 0, no key
    needed). In training the mask is a function of the "dropout" key alone, and causality holds
    under every mask: the mask is drawn per position, so it cannot carry later tokens back."""
    tokens = _tokens(5)
    clean = np.asarray(APPLY({"params": params}, tokens))
    assert jax.tree.structure(jax.eval_shape(DROPPY.init, jax.random.key(0), tokens)["params"]) == \
        jax.tree.structure(params)
    np.testing.assert_array_equal(jax.jit(DROPPY.apply)({"params": params}, tokens), clean)  # both jitted
    np.testing.assert_array_equal(jax.jit(PRIOR.apply, static_argnums=2)({"params": params}, tokens, False), clean)
    train = jax.jit(lambda t, k: DROPPY.apply({"params": params}, t, deterministic=False, rngs={"dropout": k}))
    a, b = np.asarray(train(tokens, jax.random.key(1))), np.asarray(train(tokens, jax.random.key(2)))
    np.testing.assert_array_equal(train(tokens, jax.random.key(1)), a)
    assert np.abs(a - clean).max() > 1e-2 and np.abs(a - b).max() > 1e-2
    changed = tokens.at[:, 4:].set((tokens[:, 4:] + 1) % K)
    np.testing.assert_array_equal(np.asarray(train(changed, jax.random.key(1)))[:, :5], a[:, :5])
    with pytest.raises(flax_errors.InvalidRngError):
        DROPPY.apply({"params": params}, tokens, deterministic=False)
    for rate in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match=r"dropout must be a rate in \[0, 1\)"):
            jax.eval_shape(nn.CodePrior(num_codes=K, length=L, width=16, num_heads=2, dropout=rate).init,
                           jax.random.key(0), tokens)


def test_bad_arguments_are_named(params):
    with pytest.raises(ValueError, match=r"tokens must be \[B, 9\]"):
        jax.eval_shape(PRIOR.apply, {"params": params}, jax.ShapeDtypeStruct((2, 8), jnp.int32))
    with pytest.raises(TypeError, match="tokens must be integer"):
        jax.eval_shape(PRIOR.apply, {"params": params}, jax.ShapeDtypeStruct((2, L), jnp.float32))
    with pytest.raises(ValueError, match="width .* divisible by num_heads"):
        jax.eval_shape(nn.CodePrior(num_codes=K, width=10, num_heads=4).init, jax.random.key(0),
                       jax.ShapeDtypeStruct((1, 49), jnp.int32))
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        nn.sample_codes(jax.random.key(0), PRIOR, params, 0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        nn.sample_codes(jax.random.key(0), PRIOR, params, 2, temperature=0.0)
