"""One-hidden-layer autoencoders: plain, denoising, sparse, k-sparse and contractive share it."""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import autoencoders

Activation = Literal["sigmoid", "relu", "linear"]


class DenseAutoencoder(nn.Module):
    """``x -> h = f(x @ W + b) -> output = h @ W' + c`` on flat inputs ``[B, features]``.

    The autoencoder of the course's chapter and of the papers it follows: one hidden layer of
    ``hidden`` units with activation f, tied weights ``W' = W^T`` by default (Vincent et al.
    2008, Rifai et al. 2011, Makhzani & Frey 2014 all tie them), and a linear output that the loss
    reads as logits (Bernoulli cross-entropy) or as the reconstruction itself (squared error).
    The variants differ in the loss, not the module, except the k-sparse one:

    - plain / denoising / sparse / contractive: ``activation="sigmoid"``;
    - k-sparse (Makhzani & Frey): ``activation="linear"`` and ``k`` set: only the k largest
      pre-activations of each example are kept (``genjax.autoencoders.k_sparse``).

    Attributes:
      features: the input size D.
      hidden: the code size H.
      activation: ``"sigmoid"``, ``"relu"`` or ``"linear"``.
      k: keep the k largest hidden units per example (None: keep all). ``encode``/``__call__``
        take a ``k`` that overrides it, e.g. the larger ``alpha * k`` with which the paper
        encodes at test time. (To anneal a traced k during training, apply
        ``genjax.autoencoders.k_sparse(pre_activation(x), k, max_k=...)`` and ``decode``.)
      tied: decode with ``W^T`` (True) or with a separate ``[H, D]`` kernel.

    Parameters: ``kernel`` [D, H] (Glorot-uniform), ``bias`` [H], ``output_bias`` [D], and
    ``decoder_kernel`` [H, D] when untied.
    """

    features: int
    hidden: int
    activation: Activation = "sigmoid"
    k: int | None = None
    tied: bool = True

    def setup(self):
        if self.activation not in ("sigmoid", "relu", "linear"):
            raise ValueError(f"activation must be 'sigmoid', 'relu' or 'linear', got {self.activation!r}")
        if self.k is not None and not 0 <= self.k <= self.hidden:
            raise ValueError(f"k must be in [0, hidden={self.hidden}], got {self.k}")
        init = nn.initializers.glorot_uniform()
        self.kernel = self.param("kernel", init, (self.features, self.hidden))
        self.bias = self.param("bias", nn.initializers.zeros, (self.hidden,))
        self.output_bias = self.param("output_bias", nn.initializers.zeros, (self.features,))
        if not self.tied:
            self.decoder_kernel = self.param("decoder_kernel", init, (self.hidden, self.features))

    def _check(self, x: jax.Array) -> None:
        if x.ndim != 2 or x.shape[-1] != self.features:
            raise ValueError(f"x must be flat inputs [B, {self.features}], got shape {x.shape}")

    def pre_activation(self, x: jax.Array) -> jax.Array:
        """``a = x @ W + b`` [B, H]."""
        self._check(x)
        return x @ self.kernel + self.bias

    def activate(self, a: jax.Array, k: int | jax.Array | None = None) -> jax.Array:
        """``h = f(a)``, then the k-sparse selection if a k is set [B, H]."""
        h = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "linear": lambda v: v}[self.activation](a)
        k = self.k if k is None else k
        return h if k is None else autoencoders.k_sparse(h, k)

    def encode(self, x: jax.Array, k: int | jax.Array | None = None) -> jax.Array:
        """The code ``h`` [B, H]."""
        return self.activate(self.pre_activation(x), k)

    def decode(self, h: jax.Array) -> jax.Array:
        """The output ``h @ W' + c`` [B, D]: logits or reconstruction, as the loss reads it."""
        kernel = self.kernel.T if self.tied else self.decoder_kernel
        return h @ kernel + self.output_bias

    def slopes(self, x: jax.Array, k: int | jax.Array | None = None) -> jax.Array:
        """``d h_j / d a_j`` [B, H]: f'(a), times the keep-mask of the k-sparse selection.

        The hidden layer is elementwise in ``a`` (the k-sparse selection is locally constant), so
        its Jacobian is diagonal and the slopes are its product with a vector of ones (one JVP).
        """
        a = self.pre_activation(x)
        return jax.jvp(lambda v: self.activate(v, k), (a,), (jnp.ones_like(a),))[1]

    def jacobian_norm_sq(self, x: jax.Array, k: int | jax.Array | None = None) -> jax.Array:
        """The encoder's ``||d h / d x||_F^2`` per example [B], in closed form."""
        return autoencoders.dense_jacobian_norm_sq(self.slopes(x, k), self.kernel)

    def __call__(self, x: jax.Array, k: int | jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(h, output)``: the code [B, H] and the decoder's output [B, D]."""
        h = self.encode(x, k)
        return h, self.decode(h)
