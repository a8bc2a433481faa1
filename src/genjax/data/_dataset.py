"""`ImageDataset`: a labelled image split held in host memory, with its provenance."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["ImageDataset"]

_SOURCES = ("tfds", "embedded")
_SPLITS = ("train", "test")


def _read_only(x: np.ndarray) -> np.ndarray:
    view = x.view()
    view.flags.writeable = False
    return view


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """One split of a labelled image dataset, as read-only NumPy arrays on the host.

    Attributes:
      images: uint8 `[N, H, W, C]`, values 0..255.
      labels: int32 `[N]`, values in `0..num_classes-1`.
      name: dataset name, `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
      split: `"train"` or `"test"`.
      source: where the arrays came from: `"tfds"` or `"embedded"` (the MNIST test split shipped
        with genjax).
      num_classes: number of classes.
      description: one human-readable line for reports and `summary.json`, saying exactly which
        data this is (e.g. `"embedded MNIST test split, 9,000-image train part (offline
        fallback)"`).

    Equality is identity (`eq=False`): comparing arrays elementwise is not what `==` should do.
    """

    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray  # [N] int32
    name: str
    split: str
    source: str
    num_classes: int
    description: str

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must be int32 [N] with N = {images.shape[0]} (the number of images), "
                f"got {labels.dtype} {labels.shape}"
            )
        if self.split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {self.split!r}")
        if self.source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}")
        object.__setattr__(self, "images", _read_only(images))
        object.__setattr__(self, "labels", _read_only(labels))

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)`."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metadata for `summary.json` (no arrays)."""
        return {
            "name": self.name,
            "split": self.split,
            "source": self.source,
            "num_examples": self.num_examples,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, source={self.source!r}, "
            f"images={self.images.dtype}{list(self.images.shape)}, "
            f"num_classes={self.num_classes}, description={self.description!r})"
        )
