"""An autoregressive prior over a VQ-VAE's code grid: a small causal Transformer, and its sampler.

A VQ-VAE generates only through a prior over its discrete codes (van den Oord et al. 2017,
section 3.2, with a PixelCNN; here a GPT-style decoder-only Transformer, as in VQ-GAN, Esser et
al. 2021). The grid of codes (7x7 for the MNIST VQ-VAE) is read in raster order as a sequence
of L tokens in [0, K), and

    p(c) = prod_i p(c_i | c_<i),

each factor a softmax over K codes. `CodePrior(tokens)` returns all L factors' logits in one
pass (teacher forcing: the input is the sequence shifted right behind a start token, index K,
and attention is causal), so training is the cross-entropy of `logits` against `tokens`.
`sample_codes` draws whole sequences ancestrally, one position per step of a `lax.scan`, with a
key-value cache so that each step runs the network on one position only.

    tokens [B, L] int in [0, K)
      -> shift right behind the start token K -> token embedding + position embedding [B, L, W]
      -> num_layers x pre-LN block: x + attn(LN(x)) (causal, num_heads heads), x + MLP(LN(x))
      -> LN -> Dense(K) -> logits [B, L, K]   (logits[:, i] depends on tokens[:, :i] only)

References:
    A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
    NeurIPS 2017 (arXiv:1711.00937).
    A. Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019:
    the pre-LN block.
    P. Esser, R. Rombach, B. Ommer, "Taming Transformers for High-Resolution Image Synthesis",
    CVPR 2021: a Transformer prior over VQ codes.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["CodePrior", "sample_codes"]

# The score of a masked (future) position: exp(_MASKED - max) is exactly 0 in float32, so a
# masked position gets exactly zero weight and its value cannot leak into the output.
_MASKED = -1e9


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Multi-head softmax attention: q [B, Q, H, d], k and v [B, S, H, d], mask [Q, S] (True:
    attend) -> [B, Q, H * d]."""
    scores = jnp.einsum("bqhd,bshd->bhqs", q, k) / math.sqrt(q.shape[-1])  # [B, H, Q, S]
    weights = jax.nn.softmax(jnp.where(mask, scores, _MASKED), axis=-1)
    out = jnp.einsum("bhqs,bshd->bqhd", weights, v)  # [B, Q, H, d]
    return out.reshape(*out.shape[:2], out.shape[2] * out.shape[3])


class _Block(nn.Module):
    """Pre-LN Transformer block: x + proj(attn(LN(x))), then x + MLP(LN(x)) (GELU)."""

    width: int
    num_heads: int
    mlp_ratio: int
    dropout: float = 0.0

    def setup(self):
        self.drop = nn.Dropout(self.dropout)
        self.norm1 = nn.LayerNorm(name="norm1")
        self.qkv = nn.Dense(3 * self.width, name="qkv")
        self.proj = nn.Dense(self.width, name="proj")
        self.norm2 = nn.LayerNorm(name="norm2")
        self.fc = nn.Dense(self.mlp_ratio * self.width, name="fc")
        self.out = nn.Dense(self.width, name="out")

    def _qkv(self, x):  # [..., W] -> three [..., H, W / H]
        q, k, v = jnp.split(self.qkv(self.norm1(x)), 3, axis=-1)
        shape = (*x.shape[:-1], self.num_heads, self.width // self.num_heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def _mlp(self, x, deterministic: bool = True):
        return x + self.drop(self.out(nn.gelu(self.fc(self.norm2(x)))), deterministic=deterministic)

    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool = True) -> jax.Array:
        q, k, v = self._qkv(x)  # [B, L, H, d]
        x = x + self.drop(self.proj(_attend(q, k, v, mask)), deterministic=deterministic)
        return self._mlp(x, deterministic)

    def decode_step(self, x: jax.Array, cache: tuple[jax.Array, jax.Array], position: jax.Array):
        """One position: x [B, W] at `position`; `cache` holds the keys and values [B, L, H, d]
        of the positions before it. Returns (output [B, W], cache with this position added)."""
        q, k, v = self._qkv(x)  # [B, H, d]
        keys = lax.dynamic_update_index_in_dim(cache[0], k, position, axis=1)  # [B, L, H, d]
        values = lax.dynamic_update_index_in_dim(cache[1], v, position, axis=1)
        mask = (jnp.arange(keys.shape[1]) <= position)[None, :]  # [1, L]
        attended = _attend(q[:, None], keys, values, mask)[:, 0]  # [B, W]
        return self._mlp(x + self.proj(attended)), (keys, values)


class CodePrior(nn.Module):
    """A causal Transformer over sequences of L discrete codes: `tokens [B, L] -> logits [B, L, K]`.

    `logits[:, i]` are the logits of p(c_i | c_<i): a function of `tokens[:, :i]` only (position
    0 sees only the start token). Train it with the cross-entropy of `logits` against `tokens`
    (`genjax.nn.cross_entropy_loss(logits, tokens)`, [B, L]); sample it with `sample_codes`.

    Attributes:
      num_codes: K, the vocabulary (the VQ-VAE's codebook size); index K is the start token.
      length: L, the sequence length (49 for a 7x7 code grid in raster order).
      width: W, the embedding width (divisible by `num_heads`).
      num_layers: the number of pre-LN Transformer blocks.
      num_heads: attention heads per block.
      mlp_ratio: the MLP's hidden width is `mlp_ratio * W`.
      dropout: the rate of GPT-2's dropout (Radford et al. 2019): on the embeddings' sum and on
        each residual branch (attention and MLP outputs), in training only, i.e. when
        `__call__(tokens, deterministic=False)` with a "dropout" PRNG stream
        (`apply(..., rngs={"dropout": key})`). 0 (the default) is no dropout: the same numbers
        as without it. A prior over a few thousand code grids memorises them without it.

    Examples:
      >>> prior = CodePrior(num_codes=16, length=9, width=32, num_layers=1, num_heads=2)
      >>> tokens = jnp.zeros((4, 9), jnp.int32)
      >>> params = prior.init(jax.random.key(0), tokens)["params"]
      >>> prior.apply({"params": params}, tokens).shape
      (4, 9, 16)
    """

    num_codes: int
    length: int = 49
    width: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def setup(self):
        for name in ("num_codes", "length", "width", "num_layers", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CodePrior: {name} must be a positive int, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CodePrior: dropout must be a rate in [0, 1), got {self.dropout!r}")
        if self.width % self.num_heads:
            raise ValueError(f"CodePrior: width ({self.width}) must be divisible by num_heads ({self.num_heads})")
        init = nn.initializers.normal(0.02)  # GPT-2's embedding initialisation
        self.token_embed = nn.Embed(self.num_codes + 1, self.width, embedding_init=init, name="token_embed")
        self.position_embed = self.param("position_embed", init, (self.length, self.width))  # [L, W]
        self.blocks = [_Block(self.width, self.num_heads, self.mlp_ratio, float(self.dropout), name=f"block{i}")
                       for i in range(self.num_layers)]
        self.embed_drop = nn.Dropout(float(self.dropout))
        self.final_norm = nn.LayerNorm(name="final_norm")
        self.head = nn.Dense(self.num_codes, name="head")

    def __call__(self, tokens: jax.Array, deterministic: bool = True) -> jax.Array:
        """Next-code logits of every position: tokens [B, L] int in [0, K) -> [B, L, K].

        `deterministic=False` applies `dropout` (training; needs the "dropout" PRNG stream)."""
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"CodePrior: tokens must be [B, {self.length}], got shape {tokens.shape}")
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise TypeError(f"CodePrior: tokens must be integer code indices, got dtype {tokens.dtype}")
        start = jnp.full((tokens.shape[0], 1), self.num_codes, tokens.dtype)
        inputs = jnp.concatenate([start, tokens[:, :-1]], axis=1)  # [B, L]: position i sees c_{i-1}
        x = self.token_embed(inputs) + self.position_embed  # [B, L, W]
        x = self.embed_drop(x, deterministic=deterministic)
        mask = jnp.tril(jnp.ones((self.length, self.length), bool))  # [L, L]: i attends to j <= i
        for block in self.blocks:
            x = block(x, mask, deterministic)
        return self.head(self.final_norm(x))  # [B, L, K]

    def decode_step(self, cache, previous: jax.Array, position: jax.Array):
        """The logits of position `position` from the code before it and the cache of earlier
        positions: the same numbers as `__call__(tokens)[:, position]`, for one position
        (deterministic: no dropout).

        Args:
          cache: one `(keys, values)` pair per block, each [B, L, H, W / H], written at the
            positions before `position` (`empty_cache(batch)` at position 0).
          previous: [B] int, the code at `position - 1` (the start token K at position 0).
          position: int scalar (may be traced), in [0, L).

        Returns:
          `(logits [B, K], cache)` with this position's keys and values added.
        """
        x = self.token_embed(previous) + lax.dynamic_index_in_dim(self.position_embed, position, keepdims=False)
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block.decode_step(x, layer_cache, position)
            new_cache.append(layer_cache)
        return self.head(self.final_norm(x)), new_cache

    def empty_cache(self, batch: int, dtype=jnp.float32):
        """Zero keys and values for `decode_step`: one ([B, L, H, W / H], same) pair per block."""
        shape = (batch, self.length, self.num_heads, self.width // self.num_heads)
        return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(self.num_layers)]


def sample_codes(key: jax.Array, model: CodePrior, params, num_samples: int, temperature: float = 1.0) -> jax.Array:
    """Ancestral samples of a `CodePrior`: c_i ~ softmax(logits_i / temperature) given c_<i.

    One compiled `lax.scan` over the L positions (a key-value cache: each step runs the network
    on the new position only); position i draws from `fold_in(key, i)`, so the samples are a
    function of (key, params) alone.

    Args:
      key: a PRNG key.
      model: the `CodePrior`.
      params: its parameters (`init(...)["params"]`).
      num_samples: N, a positive int.
      temperature: a positive float; 1 samples the model's distribution.

    Returns:
      int32 [N, L] codes in [0, K) (reshape to the code grid, e.g. [N, 7, 7]).
    """
    if not isinstance(model, CodePrior):
        raise TypeError(f"sample_codes: model must be a CodePrior, got {type(model).__name__}")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"sample_codes: num_samples must be a positive int, got {num_samples!r}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0 \
            or not math.isfinite(temperature):
        raise ValueError(f"sample_codes: temperature must be a finite number > 0, got {temperature!r}")
    return _sample_codes(key, model, params, num_samples, float(temperature))


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _sample_codes(key, model, params, num_samples, temperature):
    variables = {"params": params}

    def step(carry, position):
        cache, previous = carry
        logits, cache = model.apply(variables, cache, previous, position, method=CodePrior.decode_step)
        code = jax.random.categorical(jax.random.fold_in(key, position), logits / temperature, axis=-1)
        code = code.astype(jnp.int32)  # [N]
        return (cache, code), code

    cache = model.empty_cache(num_samples)
    start = jnp.full((num_samples,), model.num_codes, jnp.int32)
    _, codes = lax.scan(step, (cache, start), jnp.arange(model.length))  # [L, N]
    return codes.T  # [N, L]
