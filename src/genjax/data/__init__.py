"""genjax.data: image datasets, 2-D toy distributions and deterministic batching.

* `load_images(name, split, source="auto")`: MNIST, Fashion-MNIST or CIFAR-10 through TFDS
  (`tfds.data_source`, array_record, no TensorFlow needed to read) when the data is prepared or
  can be prepared here; offline, MNIST falls back loudly to the embedded MNIST test split
  (`load_embedded_mnist`, 10,000 real images shipped with genjax, split 9,000 / 1,000).
  The choice is made in about a second; see `genjax.data._images` for the exact rule, and
  `resolve_source` for the same decision without reading the data.
* `sample_ring`, `sample_grid`, `sample_swiss_roll`, `sample_moons`: exact samplers of the 2-D
  toy distributions (ring and grid as in PacGAN), `toy_distribution(name)` to pick one by name.
* `ArrayLoader`: minibatches that are a pure function of (seed, step), so a resumed run sees the
  same batches; multi-host aware.
* `to_float`, `binarize`: uint8 -> [0, 1] and dynamic binarization.

`tensorflow_datasets` is imported only when TFDS data is actually read.
"""

from genjax.data._dataset import ImageDataset
from genjax.data._embedded import (
    EMBEDDED_HELDOUT_EVERY,
    EMBEDDED_NUM_EXAMPLES,
    embedded_split_indices,
    load_embedded_mnist,
)
from genjax.data._images import (
    KNOWN_DATASETS,
    PROBE_TIMEOUT_S,
    DatasetUnavailableError,
    default_data_dir,
    load_images,
    resolve_source,
    split_size,
)
from genjax.data._loader import ArrayLoader
from genjax.data._preprocess import binarize, to_float
from genjax.data._toy import (
    GRID_STD,
    RING_STD,
    TOY_DISTRIBUTIONS,
    ToyDistribution,
    grid_modes,
    ring_modes,
    sample_grid,
    sample_moons,
    sample_ring,
    sample_swiss_roll,
    toy_distribution,
)

__all__ = [
    "EMBEDDED_HELDOUT_EVERY",
    "EMBEDDED_NUM_EXAMPLES",
    "GRID_STD",
    "KNOWN_DATASETS",
    "PROBE_TIMEOUT_S",
    "RING_STD",
    "TOY_DISTRIBUTIONS",
    "ArrayLoader",
    "DatasetUnavailableError",
    "ImageDataset",
    "ToyDistribution",
    "binarize",
    "default_data_dir",
    "embedded_split_indices",
    "grid_modes",
    "load_embedded_mnist",
    "load_images",
    "resolve_source",
    "ring_modes",
    "sample_grid",
    "sample_moons",
    "sample_ring",
    "sample_swiss_roll",
    "split_size",
    "to_float",
    "toy_distribution",
]
