"""Tests of genjax.data: embedded MNIST, TFDS loading and the automatic choice, toys, batching.

Nothing here downloads: an autouse fixture blocks every non-loopback connection and name lookup
and records the attempts, and TFDS is exercised through `tfds.testing.mock_data` and through a
small dataset that the tests prepare themselves from the embedded images.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genjax.data as gd
from genjax.data import _embedded, _images

# ------------------------------------------------------------------------------------------------
# Fixtures


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    """Blocks (and records) every non-loopback connect and DNS lookup; clears proxy settings."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in _LOOPBACK:
            attempts.append(address)
            raise OSError(f"network disabled in tests (connect to {address!r})")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in _LOOPBACK:
            attempts.append(host)
            raise socket.gaierror(f"network disabled in tests (lookup of {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    return attempts


@pytest.fixture
def probe_calls(monkeypatch):
    """Replaces the download-host probe by one that says "offline" and records its arguments."""
    calls: list[tuple[str, int, float]] = []

    def offline(host, port, timeout):
        calls.append((host, port, timeout))
        return False

    monkeypatch.setattr(_images, "_network_available", offline)
    return calls


@pytest.fixture
def forbid_tfds_data_source(monkeypatch):
    """Makes any call of tfds.data_source fail the test (it would try to download)."""
    tfds = pytest.importorskip("tensorflow_datasets")

    def forbidden(*args, **kwargs):
        raise AssertionError(f"tfds.data_source must not be called here: {args} {kwargs}")

    monkeypatch.setattr(tfds, "data_source", forbidden)


# ------------------------------------------------------------------------------------------------
# Embedded MNIST

# Per-class counts of the MNIST test split (10,000 images): the widely quoted counts, which are
# those of the official t10k-labels-idx1-ubyte file (yann.lecun.com/exdb/mnist).
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# First ten test labels of the official file (the well-known 7, 2, 1, 0, 4, ...).
MNIST_TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_embedded_mnist_shapes_dtypes_and_known_facts():
    images, labels = gd.load_embedded_mnist()
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), MNIST_TEST_LABEL_COUNTS)
    np.testing.assert_array_equal(labels[:10], MNIST_TEST_FIRST_LABELS)
    assert images.min() == 0 and images.max() == 255
    # Digits are white on a black background: the border is almost always 0.
    assert images[:, 0, :, 0].mean() < 1.0 and images[:, 14, 14, 0].mean() > 50


def test_embedded_mnist_is_cached_and_read_only():
    images, labels = gd.load_embedded_mnist()
    images2, labels2 = gd.load_embedded_mnist()
    assert images is images2 and labels is labels2
    assert not images.flags.writeable and not labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0, 0] = 1


def test_embedded_mnist_checksum_is_verified_on_every_load(monkeypatch, tmp_path):
    gd.load_embedded_mnist()  # fill the cache first: the check must still run
    original = _embedded._embedded_path(_embedded._LABELS_FILE).read_bytes()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF
    bad = tmp_path / _embedded._LABELS_FILE
    bad.write_bytes(bytes(corrupted))
    real_path = _embedded._embedded_path
    monkeypatch.setattr(
        _embedded,
        "_embedded_path",
        lambda name: bad if name == _embedded._LABELS_FILE else real_path(name),
    )
    with pytest.raises(IOError, match="checksum mismatch.*t10k-labels"):
        gd.load_embedded_mnist()
    with pytest.raises(IOError, match="checksum mismatch"):
        gd.load_images("mnist", "test", source="embedded")


def test_idx_parser_rejects_bad_magic_and_truncation():
    good = gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    np.testing.assert_array_equal(_embedded._parse_idx(good, 0x801, "x"), [1, 2, 3])
    with pytest.raises(ValueError, match="magic"):
        _embedded._parse_idx(good, 0x803, "x")
    short = gzip.compress(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(ValueError, match="dims"):
        _embedded._parse_idx(short, 0x801, "x")


def test_embedded_split_is_deterministic_disjoint_and_mixes_writer_populations():
    train, test = gd.embedded_split_indices("train"), gd.embedded_split_indices("test")
    assert train.size == 9_000 and test.size == 1_000
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(10_000))
    assert np.all(test % 10 == 9)
    # 500 held-out images from each writer population (SD-3: first 5,000; SD-1: last 5,000).
    assert np.sum(test < 5_000) == 500
    np.testing.assert_array_equal(train, gd.embedded_split_indices("train"))
    with pytest.raises(ValueError, match="split"):
        gd.embedded_split_indices("validation")


def test_load_images_embedded_matches_split_indices():
    images, labels = gd.load_embedded_mnist()
    for split, size in (("train", 9_000), ("test", 1_000)):
        ds = gd.load_images("mnist", split, source="embedded")
        index = gd.embedded_split_indices(split)
        assert ds.images.shape == (size, 28, 28, 1) and ds.labels.shape == (size,)
        np.testing.assert_array_equal(ds.images, images[index])
        np.testing.assert_array_equal(ds.labels, labels[index])
        assert (ds.name, ds.split, ds.source, ds.num_classes) == ("mnist", split, "embedded", 10)
        assert "fallback" not in ds.description
        assert not ds.images.flags.writeable
    train = gd.load_images("mnist", "train", source="embedded")
    assert train.description == "embedded MNIST test split, 9,000-image train part"
    # Every class is represented in the small held-out part.
    test = gd.load_images("mnist", "test", source="embedded")
    assert np.bincount(test.labels, minlength=10).min() > 70


def test_image_dataset_metadata_and_validation():
    ds = gd.load_images("mnist", "test", source="embedded")
    meta = ds.as_dict()
    json.dumps(meta)  # JSON-ready
    assert meta == {
        "name": "mnist",
        "split": "test",
        "source": "embedded",
        "num_examples": 1_000,
        "image_shape": [28, 28, 1],
        "num_classes": 10,
        "description": ds.description,
    }
    kwargs = dict(name="mnist", split="train", source="embedded", num_classes=10, description="")
    with pytest.raises(ValueError, match="uint8"):
        gd.ImageDataset(images=np.zeros((2, 4, 4, 1), np.float32),
                        labels=np.zeros(2, np.int32), **kwargs)
    with pytest.raises(ValueError, match="labels"):
        gd.ImageDataset(images=np.zeros((2, 4, 4, 1), np.uint8),
                        labels=np.zeros(3, np.int32), **kwargs)
    with pytest.raises(ValueError, match="source"):
        gd.ImageDataset(images=np.zeros((2, 4, 4, 1), np.uint8), labels=np.zeros(2, np.int32),
                        **{**kwargs, "source": "web"})


def test_load_images_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10"):
        gd.load_images("imagenet", "train")
    with pytest.raises(ValueError, match="split"):
        gd.load_images("mnist", "validation")
    with pytest.raises(ValueError, match="source"):
        gd.load_images("mnist", "train", source="web")
    with pytest.raises(ValueError, match="only available for 'mnist'"):
        gd.load_images("cifar10", "train", source="embedded")


# ------------------------------------------------------------------------------------------------
# TFDS through tfds.testing.mock_data (no files, no network)


@pytest.mark.parametrize(
    "name, shape",
    [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
def test_load_images_tfds_with_mock_data(name, shape, monkeypatch, tmp_path, network_attempts):
    tfds = pytest.importorskip("tensorflow_datasets")
    # Nothing is prepared in tmp_path, so genjax takes the "prepare" path, which mock_data turns
    # into a no-op; the probe and the TensorFlow check are forced to say yes.
    monkeypatch.setattr(_images, "_network_available", lambda host, port, timeout: True)
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = gd.load_images(name, "train", source="tfds", data_dir=tmp_path)
    assert ds.images.shape == (12, *shape) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32
    assert np.all((ds.labels >= 0) & (ds.labels < 10))
    assert (ds.name, ds.split, ds.source, ds.num_classes) == (name, "train", "tfds", 10)
    assert ds.description.startswith(f"TFDS {name}/")
    assert network_attempts == []


# ------------------------------------------------------------------------------------------------
# TFDS reading a really prepared array_record copy (prepared here from embedded images)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def prepared_mnist_dir(tmp_path, monkeypatch):
    """A data_dir with a small `mnist` prepared by TFDS itself in array_record format.

    TFDS's MNIST builder is patched to generate 40 train and 30 test examples from the embedded
    images instead of downloading, and to hand over PNG bytes (TFDS would need TensorFlow to
    encode arrays). Returns `(data_dir, train_indices, test_indices)` into the embedded arrays.
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("PIL")
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    images, labels = gd.load_embedded_mnist()
    ranges = {"train": range(0, 40), "test": range(100, 130)}

    def split_generators(self, dl_manager):
        del dl_manager
        return [
            tfds.core.SplitGenerator(name=s, gen_kwargs={"index": r}) for s, r in ranges.items()
        ]

    def generate_examples(self, index):
        for i in index:
            yield i, {"image": _png(np.asarray(images[i])), "label": int(labels[i])}

    monkeypatch.setattr(tfds_mnist.MNIST, "_split_generators", split_generators)
    monkeypatch.setattr(tfds_mnist.MNIST, "_generate_examples", generate_examples)
    data_dir = tmp_path / "tfds"
    builder = tfds.builder("mnist", data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return data_dir, np.asarray(ranges["train"]), np.asarray(ranges["test"])


def test_auto_reads_prepared_data_without_network(prepared_mnist_dir, monkeypatch,
                                                  network_attempts):
    data_dir, train_index, test_index = prepared_mnist_dir

    def no_probe(*args):
        raise AssertionError("prepared data must be found without probing the network")

    monkeypatch.setattr(_images, "_network_available", no_probe)
    images, labels = gd.load_embedded_mnist()
    for split, index in (("train", train_index), ("test", test_index)):
        ds = gd.load_images("mnist", split, data_dir=data_dir)
        assert ds.source == "tfds"
        assert ds.description.startswith(f"TFDS mnist/3.0.1 {split} split ({index.size:,} images)")
        # TFDS shuffles records when writing; compare as sets of (label, image bytes).
        got = sorted((int(l), im.tobytes()) for l, im in zip(ds.labels, ds.images))
        want = sorted((int(labels[i]), images[i].tobytes()) for i in index)
        assert got == want
    # TFDS_DATA_DIR is the default data_dir.
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    assert gd.load_images("mnist", "test", source="tfds").source == "tfds"
    assert network_attempts == []


def test_prepared_data_in_another_format_is_reported(tmp_path, probe_calls, capsys):
    version_dir = tmp_path / "mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{}")
    (version_dir / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(gd.DatasetUnavailableError, match="not in the array_record format"):
        gd.load_images("mnist", "train", source="tfds", data_dir=tmp_path)
    ds = gd.load_images("mnist", "train", data_dir=tmp_path)
    assert ds.source == "embedded"
    assert "array_record" in capsys.readouterr().err
    assert probe_calls == []  # re-preparing would not help, so nothing is probed


# ------------------------------------------------------------------------------------------------
# The automatic choice, offline


def test_auto_falls_back_to_embedded_mnist_loudly_and_fast(
    tmp_path, monkeypatch, probe_calls, caplog, capsys, forbid_tfds_data_source, network_attempts
):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)
    start = time.perf_counter()
    with caplog.at_level("WARNING", logger="genjax.data"):
        ds = gd.load_images("mnist", "train", data_dir=tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert ds.source == "embedded" and ds.images.shape == (9_000, 28, 28, 1)
    assert ds.description == "embedded MNIST test split, 9,000-image train part (offline fallback)"
    # The probe asked TFDS's MNIST download host (see tfds's image_classification/mnist.py).
    assert probe_calls == [("storage.googleapis.com", 443, gd.PROBE_TIMEOUT_S)]
    records = [r for r in caplog.records if r.name == "genjax.data"]
    assert len(records) == 1 and records[0].levelname == "WARNING"
    assert "falling back to the embedded MNIST" in records[0].getMessage()
    err = capsys.readouterr().err
    assert "falling back to the embedded MNIST" in err and "did not answer" in err
    assert network_attempts == []


def test_auto_without_tensorflow_falls_back_without_probing(tmp_path, monkeypatch, probe_calls,
                                                           capsys, forbid_tfds_data_source):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: False)
    ds = gd.load_images("mnist", "test", data_dir=tmp_path)
    assert ds.source == "embedded" and ds.images.shape == (1_000, 28, 28, 1)
    assert "offline fallback" in ds.description
    assert "TensorFlow is not installed" in capsys.readouterr().err
    assert probe_calls == []


@pytest.mark.parametrize("source", ["auto", "tfds"])
def test_cifar10_offline_is_a_clear_error(source, tmp_path, monkeypatch, probe_calls,
                                          forbid_tfds_data_source):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)
    start = time.perf_counter()
    with pytest.raises(gd.DatasetUnavailableError) as excinfo:
        gd.load_images("cifar10", "test", source=source, data_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    message = str(excinfo.value)
    assert isinstance(excinfo.value, RuntimeError)
    assert f"not prepared in {tmp_path}" in message
    assert "www.cs.toronto.edu:443 did not answer" in message
    assert "tfds build cifar10" in message and "data_dir" in message
    assert "gs://tfds-data/datasets" in message
    assert probe_calls == [("www.cs.toronto.edu", 443, gd.PROBE_TIMEOUT_S)]


def test_source_tfds_offline_is_a_clear_error_not_a_download(tmp_path, monkeypatch, probe_calls,
                                                             forbid_tfds_data_source, capsys):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)
    with pytest.raises(gd.DatasetUnavailableError, match="source='embedded'"):
        gd.load_images("mnist", "train", source="tfds", data_dir=tmp_path)
    assert "falling back" not in capsys.readouterr().err
    assert len(probe_calls) == 1


def test_source_embedded_never_probes_even_where_tensorflow_is_installed(tmp_path, monkeypatch, probe_calls,
                                                                         network_attempts, capsys):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)  # auto would probe here
    for split in ("train", "test"):
        assert gd.resolve_source("mnist", split, source="embedded", data_dir=tmp_path) == "embedded"
        assert gd.load_images("mnist", split, source="embedded", data_dir=tmp_path).source == "embedded"
    assert probe_calls == [] and network_attempts == []
    assert "falling back" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="only available for 'mnist'"):
        gd.resolve_source("cifar10", "train", source="embedded")


def test_resolve_source_makes_load_images_decision_without_reading(tmp_path, monkeypatch, probe_calls,
                                                                   forbid_tfds_data_source, capsys):
    monkeypatch.setattr(_images, "_tensorflow_available", lambda: True)
    # offline: auto falls back for MNIST (after one probe, as load_images), silently here
    assert gd.resolve_source("mnist", "train", data_dir=tmp_path) == "embedded"
    assert probe_calls == [("storage.googleapis.com", 443, gd.PROBE_TIMEOUT_S)]
    assert capsys.readouterr().err == ""
    with pytest.raises(gd.DatasetUnavailableError, match="source='embedded'"):
        gd.resolve_source("mnist", "test", source="tfds", data_dir=tmp_path)
    with pytest.raises(gd.DatasetUnavailableError, match="tfds build cifar10"):
        gd.resolve_source("cifar10", "test", data_dir=tmp_path)
    # prepared array_record files are found by looking, without a probe
    vdir = tmp_path / "mnist" / "3.0.1"
    vdir.mkdir(parents=True)
    (vdir / "dataset_info.json").write_text("{}")
    (vdir / "mnist-train.array_record-00000-of-00001").write_bytes(b"")
    probe_calls.clear()
    assert gd.resolve_source("mnist", "train", source="tfds", data_dir=tmp_path) == "tfds"
    assert probe_calls == []
    with pytest.raises(ValueError, match="split must be one of"):
        gd.resolve_source("mnist", "validation")


def test_remote_data_dir_is_read_without_probing(probe_calls):
    plan = _images._plan("mnist", "train", "gs://some-bucket/tensorflow_datasets")
    assert plan.action == "read" and plan.version is None
    assert probe_calls == []


def test_network_probe(network_attempts):
    # Loopback listener: answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert _images._network_available("127.0.0.1", server.getsockname()[1], 1.0)
    # Anything else is blocked by the fixture here: "offline", quickly and without raising.
    start = time.perf_counter()
    assert not _images._network_available("storage.googleapis.com", 443, 1.0)
    assert time.perf_counter() - start < 1.5
    assert network_attempts == ["storage.googleapis.com"]


def test_probe_address_uses_the_configured_proxy(monkeypatch):
    url = "https://storage.googleapis.com/cvdf-datasets/mnist/"
    assert _images._probe_address(url) == ("storage.googleapis.com", 443)
    assert _images._probe_address("http://example.org/x") == ("example.org", 80)
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    assert _images._probe_address(url) == ("proxy.internal", 3128)
    monkeypatch.setenv("no_proxy", "storage.googleapis.com")
    assert _images._probe_address(url) == ("storage.googleapis.com", 443)


def test_import_is_light():
    code = "import sys, genjax.data; print('tensorflow_datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------
# 2-D toy distributions


def _assign(x: np.ndarray, modes: np.ndarray) -> np.ndarray:
    return np.argmin(((x[:, None, :] - modes[None, :, :]) ** 2).sum(-1), axis=1)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mixture_toys_match_their_modes_and_stds(name):
    # Reference: PacGAN (Lin et al. 2018), section 5: ring = 8 Gaussians on the unit circle with
    # variance 1e-4; grid = 25 Gaussians at {-4,-2,0,2,4}^2 with variance 0.0025.
    dist = gd.toy_distribution(name)
    n = 20_000
    x = np.asarray(jax.jit(dist.sample, static_argnums=1)(jax.random.key(0), n))
    assert x.shape == (n, 2) and x.dtype == np.float32
    modes, std, k = dist.modes, dist.std, dist.num_modes
    component = _assign(x, modes)
    residual = x - modes[component]
    assert np.abs(residual).max() < 6 * std  # every sample sits at its own mode
    counts = np.bincount(component, minlength=k)
    expected = n / k
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(n * (1 / k) * (1 - 1 / k)))
    for j in range(k):
        r = residual[component == j]
        np.testing.assert_allclose(r.std(axis=0), std, rtol=0.1)
        np.testing.assert_allclose(r.mean(axis=0), 0.0, atol=5 * std / np.sqrt(len(r)))


def test_mode_tables():
    ring = gd.ring_modes()
    assert ring.shape == (8, 2) and ring.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ring[2], [0.0, 1.0], atol=1e-7)
    grid = gd.grid_modes()
    assert grid.shape == (25, 2) and grid.dtype == np.float32
    assert {tuple(p) for p in grid.tolist()} == {
        (a, b) for a in (-4.0, -2.0, 0.0, 2.0, 4.0) for b in (-4.0, -2.0, 0.0, 2.0, 4.0)
    }
    assert (gd.RING_STD, gd.GRID_STD) == (0.01, 0.05)


@pytest.mark.parametrize("name", gd.TOY_DISTRIBUTIONS)
def test_toys_are_deterministic_jittable_and_vmappable(name):
    sample = gd.toy_distribution(name).sample
    key = jax.random.key(3)
    eager = sample(key, 64)
    jitted = jax.jit(sample, static_argnums=1)
    np.testing.assert_allclose(jitted(key, 64), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sample(key, 64), eager)
    assert not np.allclose(sample(jax.random.key(4), 64), eager)
    batched = jax.vmap(lambda k: sample(k, 5))(jax.random.split(key, 3))
    assert batched.shape == (3, 5, 2) and batched.dtype == jnp.float32
    assert sample(key, 0).shape == (0, 2)


def test_toy_argument_errors():
    with pytest.raises(ValueError, match="ring, grid, swiss_roll, moons"):
        gd.toy_distribution("spiral")
    with pytest.raises(ValueError, match=">= 0"):
        gd.sample_ring(jax.random.key(0), -1)
    with pytest.raises(TypeError, match="static"):
        gd.sample_grid(jax.random.key(0), 2.5)


def test_swiss_roll_parametrisation():
    x = np.asarray(gd.sample_swiss_roll(jax.random.key(0), 5_000, noise=0.0), dtype=np.float64)
    t = 5.0 * np.linalg.norm(x, axis=1)  # x = (t cos t, t sin t) / 5 with t = 5 |x|
    assert t.min() >= 1.5 * np.pi - 1e-3 and t.max() <= 4.5 * np.pi + 1e-3
    np.testing.assert_allclose(x, np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5, atol=2e-4)
    # t = 1.5 pi (1 + 2u) with u uniform: t is uniform on [1.5 pi, 4.5 pi].
    assert abs(t.mean() - 3 * np.pi) < 0.1
    noisy = np.asarray(gd.sample_swiss_roll(jax.random.key(0), 5_000))
    assert noisy.std() > x.std()


def test_moons_parametrisation():
    x = np.asarray(gd.sample_moons(jax.random.key(0), 4_000, noise=0.0), dtype=np.float64)
    outer = np.isclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5) & (x[:, 1] >= -1e-6)
    inner = np.isclose(np.linalg.norm(x - [1.0, 0.5], axis=1), 1.0, atol=1e-5)
    inner &= x[:, 1] <= 0.5 + 1e-6
    assert np.all(outer | inner)
    assert abs(outer.mean() - 0.5) < 0.05


# ------------------------------------------------------------------------------------------------
# ArrayLoader


def _arrays(n: int = 103) -> dict[str, np.ndarray]:
    return {"index": np.arange(n), "x": np.arange(3 * n, dtype=np.float32).reshape(n, 3)}


def test_loader_is_a_pure_function_of_seed_and_step():
    a = gd.ArrayLoader(_arrays(), batch_size=10, seed=7)
    assert a.steps_per_epoch == 10 and a.local_batch_size == 10
    in_order = {s: a.batch(s) for s in range(35)}  # crosses 3 epoch boundaries
    b = gd.ArrayLoader(_arrays(), batch_size=10, seed=7)  # a "resumed" run
    for s in np.random.default_rng(0).permutation(35):
        got = b.batch(int(s))
        for k in got:
            np.testing.assert_array_equal(got[k], in_order[int(s)][k])
    np.testing.assert_array_equal(b.batch(123_456)["index"], a.batch(123_456)["index"])
    c = gd.ArrayLoader(_arrays(), batch_size=10, seed=8)
    assert not np.array_equal(c.batch(0)["index"], a.batch(0)["index"])


def test_loader_epochs_are_the_documented_permutations():
    n, bsz, seed = 103, 10, 5
    loader = gd.ArrayLoader(_arrays(n), batch_size=bsz, seed=seed)
    for epoch in range(3):
        seen = np.concatenate(
            [loader.batch(epoch * 10 + i)["index"] for i in range(loader.steps_per_epoch)]
        )
        reference = np.random.default_rng([seed, epoch]).permutation(n)
        np.testing.assert_array_equal(seen, reference[: 10 * bsz])
        assert np.unique(seen).size == seen.size == 100  # each example at most once; 3 dropped
        assert loader.epoch(epoch * 10 + 9) == epoch
    batch = loader.batch(4)
    np.testing.assert_array_equal(batch["x"], _arrays(n)["x"][batch["index"]])


def test_loader_batches_stack_consecutive_steps():
    loader = gd.ArrayLoader(_arrays(), batch_size=8, seed=1)
    start, k = loader.steps_per_epoch - 2, 5  # spans an epoch boundary
    stacked = loader.batches(start, k)
    assert stacked["x"].shape == (k, 8, 3) and stacked["index"].shape == (k, 8)
    for key in stacked:
        np.testing.assert_array_equal(
            stacked[key], np.stack([loader.batch(start + i)[key] for i in range(k)])
        )
    assert loader.batches(3, 0)["x"].shape == (0, 8, 3)


def test_loader_process_slices_partition_the_global_batch():
    single = gd.ArrayLoader(_arrays(), batch_size=12, seed=2)
    hosts = [
        gd.ArrayLoader(_arrays(), batch_size=12, seed=2, process_index=p, process_count=4)
        for p in range(4)
    ]
    assert hosts[0].local_batch_size == 3
    for step in (0, 7, 8, 9, 50):
        for key in ("index", "x"):
            np.testing.assert_array_equal(
                np.concatenate([h.batch(step)[key] for h in hosts]), single.batch(step)[key]
            )
    np.testing.assert_array_equal(
        np.concatenate([h.batches(6, 4)["index"] for h in hosts], axis=1),
        single.batches(6, 4)["index"],
    )


def test_loader_argument_errors():
    with pytest.raises(ValueError, match="exceeds the number of examples N = 103"):
        gd.ArrayLoader(_arrays(), batch_size=104, seed=0)
    with pytest.raises(ValueError, match="positive"):
        gd.ArrayLoader(_arrays(), batch_size=0, seed=0)
    with pytest.raises(ValueError, match="divisible by process_count 4"):
        gd.ArrayLoader(_arrays(), batch_size=10, seed=0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="process_index"):
        gd.ArrayLoader(_arrays(), batch_size=8, seed=0, process_index=4, process_count=4)
    with pytest.raises(ValueError, match="same leading dimension"):
        gd.ArrayLoader({"a": np.zeros(5), "b": np.zeros(6)}, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="at least one"):
        gd.ArrayLoader({}, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        gd.ArrayLoader(_arrays(), batch_size=2, seed=-1)
    with pytest.raises(TypeError, match="batch_size"):
        gd.ArrayLoader(_arrays(), batch_size=2.0, seed=0)
    loader = gd.ArrayLoader(_arrays(), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="step"):
        loader.batch(-1)


def test_loader_from_dataset():
    ds = gd.load_images("mnist", "test", source="embedded")
    loader = gd.ArrayLoader.from_dataset(ds, batch_size=100, seed=0)
    batch = loader.batch(3)
    assert batch["image"].shape == (100, 28, 28, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (100,) and batch["label"].dtype == np.int32
    assert loader.steps_per_epoch == 10


# ------------------------------------------------------------------------------------------------
# Preprocessing


def test_to_float_and_binarize():
    pixels = np.array([0, 51, 255], dtype=np.uint8)
    np.testing.assert_allclose(gd.to_float(pixels), [0.0, 0.2, 1.0], rtol=1e-6)
    assert gd.to_float(pixels).dtype == jnp.float32
    with pytest.raises(TypeError, match="uint8"):
        gd.to_float(np.zeros(3, np.float32))

    x = jnp.full((100_000,), 0.3, jnp.float32)
    b = jax.jit(gd.binarize)(jax.random.key(0), x)
    assert b.dtype == jnp.float32 and set(np.unique(b).tolist()) <= {0.0, 1.0}
    assert abs(float(b.mean()) - 0.3) < 0.01  # binomial sd ~ 0.0015
    np.testing.assert_array_equal(gd.binarize(jax.random.key(0), x), b)
    np.testing.assert_array_equal(gd.binarize(jax.random.key(1), jnp.array([0.0, 1.0])), [0, 1])
    with pytest.raises(TypeError, match="floating"):
        gd.binarize(jax.random.key(0), jnp.zeros(3, jnp.uint8))


def test_split_size_is_the_number_of_examples_load_images_gives():
    # embedded: genjax's own 9,000 / 1,000 split of the MNIST test set (genjax.data._embedded);
    # tfds: the TFDS catalog's split sizes (mnist, fashion_mnist 60,000 / 10,000; cifar10 50,000 / 10,000)
    for split in ("train", "test"):
        assert gd.split_size("mnist", split, "embedded") == len(
            gd.load_images("mnist", split, source="embedded").images)
    assert [gd.split_size(n, s, "tfds") for n in ("mnist", "fashion_mnist", "cifar10")
            for s in ("train", "test")] == [60_000, 10_000, 60_000, 10_000, 50_000, 10_000]
    with pytest.raises(ValueError, match="`source`"):
        gd.split_size("mnist", "train", "auto")
