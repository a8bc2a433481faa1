"""`load_images`: image datasets from TFDS array_record files, or the embedded MNIST fallback.

TFDS is used through `tfds.data_source` (array_record random access, no TensorFlow needed to
*read*). `tensorflow_datasets` is imported only inside the functions that read through it, so
`import genjax.data` stays light.

Why the automatic choice never calls `tfds.data_source(..., download=True)` blindly: with no
network, TFDS 4.9.10's downloader retries for about 3.5 minutes before it fails. `source="auto"`
therefore decides from local facts and one short probe, in about a second:

1. the dataset is prepared (array_record) in `data_dir` (default: `$TFDS_DATA_DIR`, else
   `~/tensorflow_datasets`), found by inspecting `<data_dir>/<name>/<version>/` for
   `dataset_info.json` and `<name>-<split>.array_record-*` files, without TFDS or the network
   -> read it with `download=False`;
2. else, if TFDS can prepare it here: TensorFlow is importable (TFDS 4.9.10 encodes images with
   `tf.image.encode_png` while preparing; reading needs no TensorFlow) and the dataset's download
   host answers a TCP connect within `PROBE_TIMEOUT_S` -> `tfds.data_source(..., download=True)`,
   written as array_record;
3. else, for `"mnist"` only, fall back loudly to the embedded MNIST test split (a warning on the
   `genjax.data` logger and one line on stderr); for other datasets raise
   `DatasetUnavailableError` saying how to supply the data.

A `data_dir` given as a URL (e.g. `gs://...`) is taken to hold a prepared copy and read with
`download=False` (inspecting it would need the network).

Preparing a dataset with TFDS 4.9.10 also needs `importlib_resources`, which TFDS does not
declare; genjax depends on it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import pathlib
import re
import socket
import sys
import threading
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

from genjax.data._dataset import ImageDataset
from genjax.data._embedded import embedded_split_indices, load_embedded_mnist

__all__ = [
    "KNOWN_DATASETS",
    "PROBE_TIMEOUT_S",
    "DatasetUnavailableError",
    "default_data_dir",
    "load_images",
    "resolve_source",
]

logger = logging.getLogger("genjax.data")

# Seconds the download-host probe may take (connect, DNS included) before it counts as offline.
PROBE_TIMEOUT_S = 1.0


class DatasetUnavailableError(RuntimeError):
    """The requested dataset is neither prepared locally nor obtainable from here."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    num_classes: int
    image_shape: tuple[int, int, int]
    # Examples per split in TFDS ("train", "test"): the TFDS catalog's split sizes.
    split_sizes: tuple[int, int]
    # Where TFDS's builder downloads the raw files from (the host the probe contacts).
    download_url: str


# download_url values are those of the TFDS 4.9.10 builders
# (image_classification/mnist.py and cifar.py).
_DATASETS: dict[str, _Spec] = {
    "mnist": _Spec(10, (28, 28, 1), (60_000, 10_000), "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": _Spec(
        10, (28, 28, 1), (60_000, 10_000), "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    ),
    "cifar10": _Spec(10, (32, 32, 3), (50_000, 10_000), "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
}
KNOWN_DATASETS: tuple[str, ...] = tuple(_DATASETS)
_SPLITS = ("train", "test")
_SOURCES = ("auto", "tfds", "embedded")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def default_data_dir() -> str:
    """TFDS's default data directory: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


# --------------------------------------------------------------------------------------------
# Probes. Module-level functions so that tests (and users behind unusual networks) can replace
# them with monkeypatch.


def _network_available(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to `host:port` opens within `timeout` seconds, DNS included.

    The connect runs in a daemon thread joined with `timeout`, because `socket.create_connection`
    does not bound the name lookup.
    """
    answered: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=connect, name="genjax-data-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def _tensorflow_available() -> bool:
    """Whether TensorFlow is importable (TFDS needs it to encode images while preparing)."""
    return importlib.util.find_spec("tensorflow") is not None


def _probe_address(url: str) -> tuple[str, int]:
    """`(host, port)` to probe for `url`: its proxy when one is configured, else the URL's host."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_parts.hostname:
            return proxy_parts.hostname, proxy_parts.port or 80
    return host, port


# --------------------------------------------------------------------------------------------
# Deciding where the data comes from.


@dataclasses.dataclass(frozen=True)
class _Plan:
    action: str  # "read" (prepared), "prepare" (download with TFDS) or "unavailable"
    version: str | None = None  # prepared version to read, None for TFDS's default
    reason: str = ""  # why "unavailable"


def _is_remote(data_dir: str) -> bool:
    return "://" in data_dir


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _find_prepared(name: str, split: str, data_dir: str) -> tuple[str | None, str]:
    """Looks for a prepared array_record copy of `name`/`split` under `data_dir` (local only).

    Returns `(version, note)`: the highest prepared version that has `dataset_info.json` and
    array_record files for `split` (None if none), and a note on what else was found.
    """
    root = pathlib.Path(data_dir) / name
    if not root.is_dir():
        return None, ""
    versions = sorted(
        (p.name for p in root.iterdir() if _VERSION_RE.match(p.name) and p.is_dir()),
        key=_version_key,
        reverse=True,
    )
    other_formats = []
    for version in versions:
        vdir = root / version
        if not (vdir / "dataset_info.json").is_file():
            continue
        if any(vdir.glob(f"{name}-{split}.array_record-*")):
            return version, ""
        if any(vdir.glob(f"{name}-{split}.*")):
            other_formats.append(version)
    if other_formats:
        return None, (
            f" (version {other_formats[0]} is prepared there, but not in the array_record format "
            "that tfds.data_source reads; re-prepare it with --file_format=array_record into "
            "another data_dir)"
        )
    return None, ""


def _plan(name: str, split: str, data_dir: str) -> _Plan:
    """Decides, without TFDS and in about `PROBE_TIMEOUT_S` at most, how to obtain the data."""
    if _is_remote(data_dir):
        return _Plan("read")
    version, note = _find_prepared(name, split, data_dir)
    if version is not None:
        return _Plan("read", version=version)
    missing = f"it is not prepared in {data_dir}{note}"
    if note:
        return _Plan("unavailable", reason=missing)
    if not _tensorflow_available():
        return _Plan(
            "unavailable",
            reason=f"{missing}, and TFDS cannot prepare it here because TensorFlow is not "
            "installed (TFDS encodes images with TensorFlow while preparing; reading needs no "
            "TensorFlow)",
        )
    host, port = _probe_address(_DATASETS[name].download_url)
    if not _network_available(host, port, PROBE_TIMEOUT_S):
        return _Plan(
            "unavailable",
            reason=f"{missing}, and its download host {host}:{port} did not answer within "
            f"{PROBE_TIMEOUT_S:g} s (offline?)",
        )
    return _Plan("prepare")


def _unavailable_message(name: str, split: str, reason: str) -> str:
    lines = [
        f"TFDS dataset {name!r} ({split} split) is unavailable: {reason}.",
        "Supply it in one of these ways:",
        f"  * prepare it once on a machine with network and TensorFlow: `tfds build {name} "
        f"--data_dir=DIR --file_format=array_record` (or tfds.data_source({name!r}, "
        f"data_dir=DIR, download=True, builder_kwargs={{'file_format': 'array_record'}})), "
        "then pass data_dir=DIR here (or set TFDS_DATA_DIR=DIR);",
        "  * pass data_dir pointing at an already prepared array_record copy, e.g. a GCS bucket "
        "reachable from a TPU VM such as the public TFDS bucket (data_dir='gs://tfds-data/datasets'"
        " where it holds array_record files);",
    ]
    if name == "mnist":
        lines.append(
            "  * or use source='embedded' (the MNIST test split shipped with genjax: 9,000 train "
            "/ 1,000 test images)."
        )
    else:
        lines.append(
            f"  (source='embedded' exists only for 'mnist'; there is no offline copy of {name!r}.)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Loading.


def _embedded_dataset(split: str, *, fallback: bool) -> ImageDataset:
    images, labels = load_embedded_mnist()
    index = embedded_split_indices(split)
    if split == "train":
        part = f"{index.size:,}-image train part"
    else:
        part = f"{index.size:,}-image held-out part, index % 10 == 9"
    description = f"embedded MNIST test split, {part}" + (" (offline fallback)" if fallback else "")
    return ImageDataset(
        images=images[index],
        labels=labels[index],
        name="mnist",
        split=split,
        source="embedded",
        num_classes=10,
        description=description,
    )


def _read_all(data_source: Any, name: str, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Reads every record of a TFDS data source into uint8 `[N, H, W, C]` and int32 `[N]`."""
    n = len(data_source)
    images = np.empty((n, *spec.image_shape), dtype=np.uint8)
    labels = np.empty((n,), dtype=np.int32)
    for i in range(n):
        example = data_source[i]
        image = np.asarray(example["image"])
        if image.shape != spec.image_shape:
            raise ValueError(
                f"TFDS {name!r} record {i}: image shape {image.shape}, expected {spec.image_shape}"
            )
        images[i] = image
        labels[i] = example["label"]
    return images, labels


def _load_tfds(name: str, split: str, data_dir: str, plan: _Plan) -> ImageDataset:
    import tensorflow_datasets as tfds  # lazy: slow to import, and only needed here

    spec = _DATASETS[name]
    if plan.action == "read":
        tfds_name = f"{name}:{plan.version}" if plan.version else name
        source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    else:
        source = tfds.data_source(
            name,
            split=split,
            data_dir=data_dir,
            download=True,
            builder_kwargs={"file_format": "array_record"},
        )
    images, labels = _read_all(source, name, spec)
    info = getattr(source, "dataset_info", None)
    full_name = getattr(info, "full_name", None) or name
    return ImageDataset(
        images=images,
        labels=labels,
        name=name,
        split=split,
        source="tfds",
        num_classes=spec.num_classes,
        description=f"TFDS {full_name} {split} split ({len(labels):,} images) from {data_dir}",
    )


def _announce_fallback(split: str, reason: str) -> None:
    message = (
        f"genjax.data: falling back to the embedded MNIST test split ({split} part) because TFDS "
        f"'mnist' is unavailable: {reason}. Pass source='tfds' to make this an error."
    )
    # Without any logging configuration, Python's last-resort handler already writes a warning to
    # stderr; otherwise the record may go anywhere, so print the line to stderr as well.
    reaches_stderr_anyway = not logger.hasHandlers()
    logger.warning(message)
    if not reaches_stderr_anyway:
        print(message, file=sys.stderr, flush=True)


def _check_request(name: str, split: str, source: str) -> None:
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    if source == "embedded" and name != "mnist":
        raise ValueError(
            f"source='embedded' is only available for 'mnist' (genjax ships the MNIST test "
            f"split); {name!r} needs source='tfds' or 'auto'"
        )


def _resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    return data_dir if _is_remote(data_dir) else os.path.expanduser(data_dir)


def resolve_source(
    name: str,
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Which data `load_images(name, split, source=..., data_dir=...)` would read, without
    reading it: `"tfds"` or `"embedded"`.

    It makes the same decision as `load_images` (see the module docstring), so it touches the
    network exactly when `load_images` would probe: `source` is `"auto"` or `"tfds"`, the data
    is not prepared in a local `data_dir`, and TensorFlow is importable. `source="embedded"`
    never does.

    Raises:
      ValueError: as `load_images`.
      DatasetUnavailableError: `load_images` would raise it (the message says how to supply the
        data).
    """
    _check_request(name, split, source)
    if source == "embedded":
        return "embedded"
    plan = _plan(name, split, _resolve_data_dir(data_dir))
    if plan.action != "unavailable":
        return "tfds"
    if source == "auto" and name == "mnist":
        return "embedded"
    raise DatasetUnavailableError(_unavailable_message(name, split, plan.reason))


def split_size(name: str, split: str, source: str) -> int:
    """The number of examples of one split from a resolved source (`"tfds"` or `"embedded"`,
    as `resolve_source` returns it), without reading the data.

    TFDS sizes are the TFDS catalog's (MNIST and Fashion-MNIST 60,000 / 10,000, CIFAR-10
    50,000 / 10,000); the embedded MNIST split is 9,000 / 1,000.

    Examples:
      >>> split_size("mnist", "train", "embedded"), split_size("cifar10", "train", "tfds")
      (9000, 50000)
    """
    _check_request(name, split, source)
    if source not in ("tfds", "embedded"):
        raise ValueError(f"`source` must be a resolved source, 'tfds' or 'embedded', got {source!r}")
    if source == "embedded":
        return int(embedded_split_indices(split).size)
    return _DATASETS[name].split_sizes[_SPLITS.index(split)]


def load_images(
    name: str,
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Loads one split of an image classification dataset into host memory.

    Args:
      name: `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
      split: `"train"` or `"test"`.
      source: `"tfds"` (TFDS array_record data, prepared or downloaded; never the fallback),
        `"embedded"` (MNIST only: the test split shipped with genjax, 9,000 images for `"train"`
        and the 1,000 held-out images `i % 10 == 9` for `"test"`), or `"auto"`: TFDS when the
        data is prepared in `data_dir` or can be prepared here (TensorFlow installed and the
        download host answers a 1-second probe), else, for MNIST only, the embedded data with a
        warning on the `genjax.data` logger and one line on stderr. The decision takes about a
        second at most; see the module docstring.
      data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

    Returns:
      An `ImageDataset` with uint8 `[N, H, W, C]` images and int32 `[N]` labels;
      `dataset.description` and `dataset.source` record which data it is.

    Raises:
      ValueError: unknown `name`, `split` or `source`, or `source="embedded"` for a dataset other
        than MNIST.
      DatasetUnavailableError: TFDS data is needed but is not prepared and cannot be prepared
        here (no network or no TensorFlow); the message says how to supply it.
    """
    _check_request(name, split, source)
    if source == "embedded":  # no probe, no TFDS, no network
        return _embedded_dataset(split, fallback=False)

    data_dir = _resolve_data_dir(data_dir)
    plan = _plan(name, split, data_dir)
    if plan.action == "unavailable":
        if source == "auto" and name == "mnist":
            _announce_fallback(split, plan.reason)
            return _embedded_dataset(split, fallback=True)
        raise DatasetUnavailableError(_unavailable_message(name, split, plan.reason))
    return _load_tfds(name, split, data_dir, plan)
