"""`ArrayLoader`: deterministic minibatches of in-memory arrays, a pure function of (seed, step).

Epoch `e` visits the examples in the order `np.random.default_rng([seed, e]).permutation(N)`, cut
into `N // batch_size` global batches (the remainder is dropped); global step `s` is batch
`s % steps_per_epoch` of epoch `s // steps_per_epoch`. Nothing depends on the loader's history, so
a run resumed at step `s` with a fresh loader sees exactly the batches of the run that never
stopped, and the order does not depend on JAX's PRNG implementation or on the device count.

Multi-host: `batch_size` is the global batch; process `p` of `P` gets rows
`[p * B / P, (p + 1) * B / P)` of every global batch, so the processes' slices, concatenated in
process order, are the single-process batch.

All of this is host-side NumPy (no device sync); put the result on devices with
`jax.device_put` / `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from genjax.data._dataset import ImageDataset

__all__ = ["ArrayLoader"]


def _int(value: object, what: str) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {value!r}") from None


class ArrayLoader:
    """Deterministic, resumable minibatches of a dict of equally long arrays.

    Args:
      arrays: name -> array with the same leading dimension N, e.g.
        `{"image": images, "label": labels}`.
      batch_size: the GLOBAL batch size B (summed over processes); `N // B` steps per epoch.
      seed: non-negative int; epoch `e` visits the examples in the order
        `np.random.default_rng([seed, e]).permutation(N)`.
      process_index: this process's index p in `0..process_count-1` (`jax.process_index()`).
      process_count: number of processes P (`jax.process_count()`); B must be divisible by P.

    Raises:
      ValueError: arrays empty or of different lengths, `batch_size` not in `1..N`, `batch_size`
        not divisible by `process_count`, or a bad `process_index` / `seed`.

    Examples:
      >>> loader = ArrayLoader({"x": np.arange(10)}, batch_size=4, seed=0)
      >>> loader.steps_per_epoch
      2
      >>> loader.batch(0)["x"].shape, loader.batches(0, 3)["x"].shape
      ((4,), (3, 4))
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        seed: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        if not arrays:
            raise ValueError("arrays must hold at least one array")
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in self._arrays.items()}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise ValueError(
                f"all arrays need the same leading dimension N; got leading dims {lengths}"
            )
        self._num_examples = int(next(iter(lengths.values())))
        self._batch_size = _int(batch_size, "batch_size")
        self._seed = _int(seed, "seed")
        self._process_index = _int(process_index, "process_index")
        self._process_count = _int(process_count, "process_count")
        n, b = self._num_examples, self._batch_size
        if b <= 0:
            raise ValueError(f"batch_size must be positive, got {b}")
        if n // b == 0:
            raise ValueError(
                f"batch_size {b} exceeds the number of examples N = {n}: an epoch would have "
                "0 steps (the remainder is dropped)"
            )
        if self._seed < 0:
            raise ValueError(f"seed must be >= 0, got {self._seed}")
        if self._process_count <= 0:
            raise ValueError(f"process_count must be positive, got {self._process_count}")
        if not 0 <= self._process_index < self._process_count:
            raise ValueError(
                f"process_index must be in 0..{self._process_count - 1}, got {self._process_index}"
            )
        if b % self._process_count:
            raise ValueError(
                f"the global batch_size {b} must be divisible by process_count "
                f"{self._process_count}"
            )
        # Cache of the most recently used epoch's permutation: (epoch, permutation [N]).
        self._cached_permutation: tuple[int, np.ndarray] | None = None

    @classmethod
    def from_dataset(
        cls,
        dataset: ImageDataset,
        batch_size: int,
        seed: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> ArrayLoader:
        """A loader over `{"image": dataset.images, "label": dataset.labels}`."""
        return cls(
            {"image": dataset.images, "label": dataset.labels},
            batch_size,
            seed,
            process_index=process_index,
            process_count=process_count,
        )

    @property
    def num_examples(self) -> int:
        """N."""
        return self._num_examples

    @property
    def batch_size(self) -> int:
        """The global batch size B."""
        return self._batch_size

    @property
    def local_batch_size(self) -> int:
        """Rows returned to this process per step: B / process_count."""
        return self._batch_size // self._process_count

    @property
    def steps_per_epoch(self) -> int:
        """N // B (the last partial batch is dropped)."""
        return self._num_examples // self._batch_size

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def process_index(self) -> int:
        return self._process_index

    @property
    def process_count(self) -> int:
        return self._process_count

    def epoch(self, step: int) -> int:
        """The epoch that global step `step` belongs to."""
        return self._check_step(step) // self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s order: `default_rng([seed, epoch]).permutation(N)`, read-only `[N]`."""
        epoch = _int(epoch, "epoch")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        cached = self._cached_permutation
        if cached is not None and cached[0] == epoch:
            return cached[1]
        permutation = np.random.default_rng([self._seed, epoch]).permutation(self._num_examples)
        permutation.flags.writeable = False
        self._cached_permutation = (epoch, permutation)
        return permutation

    def indices(self, start_step: int, num_steps: int) -> np.ndarray:
        """Example indices of this process's rows at steps `start_step .. start_step+num_steps-1`.

        Returns:
          int64 `[num_steps, local_batch_size]`.
        """
        start_step = self._check_step(start_step)
        num_steps = _int(num_steps, "num_steps")
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        spe, b, bl = self.steps_per_epoch, self._batch_size, self.local_batch_size
        offset = self._process_index * bl
        out = np.empty((num_steps, bl), dtype=np.int64)
        for i, step in enumerate(range(start_step, start_step + num_steps)):
            epoch, position = divmod(step, spe)
            begin = position * b + offset
            out[i] = self.permutation(epoch)[begin : begin + bl]
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`: name -> `[local_batch_size, ...]`."""
        rows = self.indices(step, 1)[0]
        return {k: v[rows] for k, v in self._arrays.items()}

    def batches(self, start_step: int, num_steps: int) -> dict[str, np.ndarray]:
        """`num_steps` consecutive batches, stacked: name -> `[num_steps, local_batch_size, ...]`.

        Equal to stacking `batch(start_step + i)` for `i < num_steps`; meant for several train
        steps fused into one `lax.scan`.
        """
        rows = self.indices(start_step, num_steps)
        return {k: v[rows] for k, v in self._arrays.items()}

    def _check_step(self, step: int) -> int:
        step = _int(step, "step")
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return step

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self._arrays.items()}
        return (
            f"ArrayLoader(arrays={shapes}, batch_size={self._batch_size}, seed={self._seed}, "
            f"process_index={self._process_index}, process_count={self._process_count})"
        )
