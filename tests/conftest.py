"""Tests marked `accelerator` are skipped unless JAX's default backend is a GPU or TPU
(`bash benchmarks/device_check.sh` runs them on one).

One JAX persistent compilation cache per test process (each pytest-xdist worker its own, in a
temporary folder removed at the end).

Many tests compile a program that an earlier test in the same process already compiled: a resumed
run builds its step again (a new closure, so `jax.jit`'s in-memory cache misses), and
`genjax._backend.disabled` clears the in-memory caches on entry and exit. The cache is keyed by
the lowered program (and the compile options and backend), so a hit is the executable that
compiling the same program gives; tracing and lowering still happen each time, and `jax.jit`'s
own caches (`_cache_size`) are untouched. Subprocesses do not inherit it (it is set with
`jax.config`, not the environment); the CLI tests give their training runs their own.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

_CACHE_DIR: str | None = None


def pytest_configure(config):
    global _CACHE_DIR
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the pytest-xdist controller runs no test
    import jax

    _CACHE_DIR = tempfile.mkdtemp(prefix="genjax-tests-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    # (the default, 1 s, leaves out most of the tests' small programs; below 0.3 s compiling
    # again costs about what storing and reading the executable does)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)


def pytest_unconfigure(config):
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("accelerator")]
    if not marked:
        return
    import jax

    backend = jax.default_backend()
    if backend in ("gpu", "tpu"):
        return
    skip = pytest.mark.skip(reason=f"needs a GPU or TPU (JAX's default backend here: {backend})")
    for item in marked:
        item.add_marker(skip)
