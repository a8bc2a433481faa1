"""2-D toy distributions for GAN, autoencoder and diffusion experiments, sampled exactly in JAX.

Every sampler is `sample_x(key, n, ...) -> float32 [n, 2]`: pure, keyed explicitly, `n` static,
safe under `jit` (with `n` static) and `vmap` over keys. Mixture components are chosen uniformly.

* ring: 8 Gaussians with means `(cos(2 pi i / 8), sin(2 pi i / 8))`, i = 0..7 (radius 1), and
  standard deviation 0.01 (variance 1e-4): the "2D-ring" of the PacGAN benchmark.
* grid: 25 Gaussians with means `{-4, -2, 0, 2, 4}^2` and standard deviation 0.05
  (variance 0.0025): the "2D-grid" of the PacGAN benchmark.
* swiss roll: `t = 1.5 pi (1 + 2u)`, `u ~ U(0, 1)`, point `(t cos t, t sin t) / 5 + noise * eps`.
* two moons: scikit-learn's `make_moons` shapes with uniform angles.

References:
  Z. Lin, A. Khetan, G. Fanti, S. Oh. PacGAN: The power of two samples in generative adversarial
  networks. NeurIPS 2018, section 5 (ring and grid benchmarks).
  L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein. Unrolled generative adversarial networks.
  ICLR 2017 (the 8-Gaussian ring).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GRID_STD",
    "RING_STD",
    "TOY_DISTRIBUTIONS",
    "ToyDistribution",
    "grid_modes",
    "ring_modes",
    "sample_grid",
    "sample_moons",
    "sample_ring",
    "sample_swiss_roll",
    "toy_distribution",
]

RING_STD = 0.01
GRID_STD = 0.05
RING_NUM_MODES = 8
RING_RADIUS = 1.0
GRID_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)
SWISS_ROLL_SCALE = 5.0


def _check_n(n: int) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(
            f"n must be a static Python int (mark it static under jit), got {n!r}"
        ) from None
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n


def ring_modes() -> np.ndarray:
    """Means of the 8-Gaussian ring: `(cos(2 pi i / 8), sin(2 pi i / 8))`, float32 `[8, 2]`."""
    angles = 2.0 * np.pi * np.arange(RING_NUM_MODES) / RING_NUM_MODES
    return (RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)).astype(np.float32)


def grid_modes() -> np.ndarray:
    """Means of the 25-Gaussian grid, `{-4, -2, 0, 2, 4}^2` row-major in x, float32 `[25, 2]`."""
    values = np.asarray(GRID_VALUES, dtype=np.float32)
    xs, ys = np.meshgrid(values, values, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def _sample_mixture(key: jax.Array, n: int, modes: np.ndarray, std: float) -> jax.Array:
    """Equal-weight mixture of isotropic Gaussians `N(modes[k], std^2 I)`, float32 `[n, 2]`."""
    component_key, noise_key = jax.random.split(key)
    component = jax.random.randint(component_key, (n,), 0, modes.shape[0])  # [n]
    noise = jax.random.normal(noise_key, (n, 2), dtype=jnp.float32)  # [n, 2]
    return jnp.asarray(modes)[component] + jnp.float32(std) * noise


def sample_ring(key: jax.Array, n: int) -> jax.Array:
    """Samples the 8-Gaussian ring of PacGAN (Lin et al. 2018).

    `x ~ (1/8) sum_i N((cos(2 pi i / 8), sin(2 pi i / 8)), 0.01^2 I)`.

    Args:
      key: PRNG key.
      n: number of samples (static).

    Returns:
      float32 `[n, 2]`.

    Examples:
      >>> sample_ring(jax.random.key(0), 4).shape
      (4, 2)
    """
    return _sample_mixture(key, _check_n(n), ring_modes(), RING_STD)


def sample_grid(key: jax.Array, n: int) -> jax.Array:
    """Samples the 25-Gaussian grid of PacGAN (Lin et al. 2018).

    `x ~ (1/25) sum_{a, b in {-4, -2, 0, 2, 4}} N((a, b), 0.05^2 I)`.

    Args:
      key: PRNG key.
      n: number of samples (static).

    Returns:
      float32 `[n, 2]`.
    """
    return _sample_mixture(key, _check_n(n), grid_modes(), GRID_STD)


def sample_swiss_roll(key: jax.Array, n: int, noise: float = 0.2) -> jax.Array:
    """Samples a 2-D swiss roll.

    `t = 1.5 pi (1 + 2u)` with `u ~ U(0, 1)` (so t in [1.5 pi, 4.5 pi], 1.5 turns), and
    `x = (t cos t, t sin t) / 5 + noise * eps`, `eps ~ N(0, I)`. The division by 5 brings the
    noiseless roll into [-1.90, 2.53] x [-2.21, 2.83]. With the default `noise=0.2` this is exactly
    the distribution of scikit-learn's `make_swiss_roll(noise=1.0)[:, [0, 2]] / 5`, the
    "swissroll" toy of FFJORD (Grathwohl et al. 2019) and many diffusion tutorials.

    Args:
      key: PRNG key.
      n: number of samples (static).
      noise: standard deviation of the isotropic Gaussian noise, in output units.

    Returns:
      float32 `[n, 2]`.
    """
    n = _check_n(n)
    t_key, noise_key = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(t_key, (n,), dtype=jnp.float32))  # [n]
    roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) / SWISS_ROLL_SCALE  # [n, 2]
    return roll + jnp.float32(noise) * jax.random.normal(noise_key, (n, 2), dtype=jnp.float32)


def sample_moons(key: jax.Array, n: int, noise: float = 0.05) -> jax.Array:
    """Samples the two interleaved half-circles ("two moons").

    Each point picks a moon with probability 1/2 and an angle `theta ~ U(0, pi)`; the outer moon is
    `(cos theta, sin theta)`, the inner one `(1 - cos theta, 0.5 - sin theta)`; then
    `noise * eps`, `eps ~ N(0, I)`, is added. These are scikit-learn's `make_moons` shapes and
    coordinates (centre (0.5, 0.25)) with random instead of evenly spaced angles.

    Args:
      key: PRNG key.
      n: number of samples (static).
      noise: standard deviation of the isotropic Gaussian noise.

    Returns:
      float32 `[n, 2]`.
    """
    n = _check_n(n)
    moon_key, theta_key, noise_key = jax.random.split(key, 3)
    inner = jax.random.bernoulli(moon_key, 0.5, (n,))  # [n]
    theta = jnp.pi * jax.random.uniform(theta_key, (n,), dtype=jnp.float32)  # [n]
    outer_xy = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)  # [n, 2]
    inner_xy = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)  # [n, 2]
    xy = jnp.where(inner[:, None], inner_xy, outer_xy)
    return xy + jnp.float32(noise) * jax.random.normal(noise_key, (n, 2), dtype=jnp.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ToyDistribution:
    """A named 2-D toy distribution.

    Attributes:
      name: `"ring"`, `"grid"`, `"swiss_roll"` or `"moons"`.
      sample: `sample(key, n) -> float32 [n, 2]` with the default parameters.
      modes: float32 `[K, 2]` means of the mixture components, or None if not a mixture.
      std: per-coordinate standard deviation of every component, or None if not a mixture.
    """

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    modes: np.ndarray | None = None  # [K, 2]
    std: float | None = None

    @property
    def num_modes(self) -> int | None:
        return None if self.modes is None else int(self.modes.shape[0])


TOY_DISTRIBUTIONS: tuple[str, ...] = ("ring", "grid", "swiss_roll", "moons")


def toy_distribution(name: str) -> ToyDistribution:
    """The toy distribution called `name` (one of `TOY_DISTRIBUTIONS`)."""
    if name == "ring":
        return ToyDistribution("ring", sample_ring, ring_modes(), RING_STD)
    if name == "grid":
        return ToyDistribution("grid", sample_grid, grid_modes(), GRID_STD)
    if name == "swiss_roll":
        return ToyDistribution("swiss_roll", sample_swiss_roll)
    if name == "moons":
        return ToyDistribution("moons", sample_moons)
    raise ValueError(
        f"unknown toy distribution {name!r}; known: {', '.join(TOY_DISTRIBUTIONS)}"
    )

