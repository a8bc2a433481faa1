"""The MNIST test split shipped inside the package: genjax's offline dataset.

The two gzip-compressed IDX files in `genjax/data/embedded/` are the official MNIST test split
(10,000 images), byte for byte as published by LeCun, Cortes and Burges and as TFDS downloads them.
Every load checks their sha256 against the values below (also listed in `embedded/README.md`), so a
damaged installation fails loudly instead of training on garbage.

Train / held-out split of the embedded images (version-independent, a pure function of the index):

* held-out ("test") part: the 1,000 images with index `i % 10 == 9`;
* train part: the other 9,000 images, in their original order.

MNIST's test split is written by two populations: its first 5,000 images come from SD-3 (Census
Bureau employees, the cleaner writing) and its last 5,000 from SD-1 (high-school students). Taking
every tenth image draws 500 held-out images from each population, so both parts mix the two
writer populations in the same proportion, unlike a "last 1,000 images" split.

References:
  Y. LeCun, C. Cortes, C. J. C. Burges. The MNIST database of handwritten digits.
  http://yann.lecun.com/exdb/mnist/ (license CC BY-SA 3.0).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
from importlib.resources.abc import Traversable

import numpy as np

__all__ = [
    "EMBEDDED_HELDOUT_EVERY",
    "EMBEDDED_NUM_EXAMPLES",
    "embedded_split_indices",
    "load_embedded_mnist",
]

EMBEDDED_NUM_EXAMPLES = 10_000
# Index i is held out iff i % EMBEDDED_HELDOUT_EVERY == EMBEDDED_HELDOUT_EVERY - 1.
EMBEDDED_HELDOUT_EVERY = 10

_IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
_LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
# sha256 of the .gz files as shipped; the same values are in embedded/README.md and in TFDS's
# url_checksums/mnist.txt.
_SHA256 = {
    _IMAGES_FILE: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    _LABELS_FILE: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# IDX magic numbers: 0x00 0x00, type byte 0x08 (unsigned byte), number of dimensions.
_IDX_UBYTE_3D = 0x00000803
_IDX_UBYTE_1D = 0x00000801


def _embedded_path(filename: str) -> Traversable:
    """Location of an embedded file inside the installed package (works from a wheel or a zip)."""
    return importlib.resources.files("genjax.data").joinpath("embedded", filename)


def _read_verified(filename: str) -> bytes:
    """Reads an embedded file and checks its sha256; raises `IOError` on a mismatch."""
    path = _embedded_path(filename)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"genjax's embedded MNIST file {filename!r} is missing from the installed package "
            f"(looked at {path}); reinstall genjax."
        ) from e
    digest = hashlib.sha256(data).hexdigest()
    expected = _SHA256[filename]
    if digest != expected:
        raise IOError(
            f"checksum mismatch for genjax's embedded MNIST file {filename!r} at {path}: "
            f"sha256 is {digest}, expected {expected}. The installed package is damaged; "
            "reinstall genjax."
        )
    return data


def _parse_idx(gz_bytes: bytes, magic: int, filename: str) -> np.ndarray:
    """Parses a gzip-compressed IDX file of unsigned bytes into a uint8 array of its dims."""
    raw = gzip.decompress(gz_bytes)
    got_magic = int.from_bytes(raw[:4], "big")
    if got_magic != magic:
        raise ValueError(f"{filename}: IDX magic is {got_magic:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise ValueError(
            f"{filename}: IDX header declares dims {dims} ({int(np.prod(dims))} bytes of data), "
            f"but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.cache
def _parsed_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    images = _parse_idx(_read_verified(_IMAGES_FILE), _IDX_UBYTE_3D, _IMAGES_FILE)
    labels = _parse_idx(_read_verified(_LABELS_FILE), _IDX_UBYTE_1D, _LABELS_FILE)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"embedded MNIST: {images.shape[0]} images but {labels.shape[0]} labels")
    images = images[..., None]  # [N, 28, 28, 1]
    labels = labels.astype(np.int32)  # [N]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split shipped with genjax, checksum-verified on every call.

    The files' sha256 is checked on every call (about 5 ms); the parsed arrays are cached for the
    life of the process and returned read-only, so every caller shares one copy.

    Returns:
      `(images, labels)`: images uint8 `[10000, 28, 28, 1]` with values 0..255 (0 is background),
      labels int32 `[10000]` in 0..9, in the order of the official file.

    Raises:
      IOError: an embedded file does not have its published sha256 (damaged installation).

    Examples:
      >>> images, labels = load_embedded_mnist()
      >>> images.shape, images.dtype, labels.shape, labels.dtype
      ((10000, 28, 28, 1), dtype('uint8'), (10000,), dtype('int32'))
    """
    for filename in (_IMAGES_FILE, _LABELS_FILE):
        _read_verified(filename)
    return _parsed_embedded_mnist()


def embedded_split_indices(split: str) -> np.ndarray:
    """Indices of the embedded MNIST images in genjax's deterministic train / held-out split.

    Args:
      split: `"train"` (the 9,000 indices with `i % 10 != 9`) or `"test"` (the 1,000 with
        `i % 10 == 9`).

    Returns:
      int64 `[9000]` or `[1000]`, increasing.
    """
    index = np.arange(EMBEDDED_NUM_EXAMPLES)
    heldout = index % EMBEDDED_HELDOUT_EVERY == EMBEDDED_HELDOUT_EVERY - 1
    if split == "train":
        return index[~heldout]
    if split == "test":
        return index[heldout]
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
