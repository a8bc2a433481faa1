"""A small CNN classifier for 28x28 images, whose penultimate features serve FID/KID on MNIST."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn._conv import Conv


class MnistClassifier(nn.Module):
    """conv3x3(32)-pool-conv3x3(64)-pool-dense(features)-dropout-dense(classes), ReLU.

    Input: float images in [0, 1], [B, 28, 28, C]. `__call__` returns logits [B, num_classes];
    `features` returns the penultimate activations [B, features_dim], the embedding in which
    later experiments compute the Frechet distance of generated digits (the MNIST analogue of
    FID's Inception pool features, Heusel et al. 2017).
    """

    num_classes: int = 10
    features_dim: int = 128
    dropout_rate: float = 0.3

    def setup(self):
        self.conv1 = Conv(32, (3, 3), name="conv1")
        self.conv2 = Conv(64, (3, 3), name="conv2")
        self.dense = nn.Dense(self.features_dim, name="dense")
        self.dropout = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes, name="head")

    def features(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of images [B, H, W, C], got shape {x.shape}")
        x = nn.max_pool(nn.relu(self.conv1(x)), (2, 2), strides=(2, 2))  # [B, 14, 14, 32]
        x = nn.max_pool(nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))  # [B, 7, 7, 64]
        return nn.relu(self.dense(x.reshape(x.shape[0], -1)))  # [B, features_dim]

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = self.dropout(self.features(x), deterministic=not train)
        return self.head(h)  # [B, num_classes]


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy from logits [B, K] and int labels [B] -> [B]."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} disagree on the batch shape")
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
