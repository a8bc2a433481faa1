"""On a GPU or TPU: what tests/test_export.py proves from a CPU host, checked where it runs.

Every test here is marked `accelerator` and skipped when JAX's default backend is the CPU
(tests/conftest.py); `bash benchmarks/device_check.sh` runs them on a device. The references are
the same programs compiled by `jax.jit` on the same device: the module exported for
("tpu", "cuda") from any host must compute what the step traced here computes, and a replicated
step must train each seed as that seed's run alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _families
from genjax import _backend, train
from tests import _export as hx

pytestmark = pytest.mark.accelerator

K = 2  # fused steps per call


def _close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=rtol)


def test_jax_runs_on_an_accelerator_and_genjax_takes_the_plain_paths():
    assert jax.default_backend() in ("gpu", "tpu")
    assert _backend.auto_replica_mode() == "vmap"  # "auto" vmaps replicas off the CPU
    assert _backend.compiler_options() == {}  # no XLA:CPU option on this backend


@pytest.mark.parametrize("name", ["vae_mlp", "dcgan"])
def test_the_fused_step_exported_for_tpu_and_gpu_runs_here_as_the_jitted_step(name):
    fam = _families.build_family(name)
    state, batches = fam.init(jax.random.key(0)), fam.batches(jax.random.key(1), K)
    fused = train.fuse_steps(fam.step)
    exported = hx.export(fused, hx.abstract((state, batches)))
    assert hx.accelerator_problems(exported) == []
    (ours, summary), (ref, ref_summary) = exported.call(state, batches), jax.jit(fused)(state, batches)
    assert int(ours.step) == K and all(np.isfinite(np.asarray(m)).all() for m in jax.tree.leaves(summary["mean"]))
    _close(ours.params, ref.params, 1e-5)
    _close(summary, ref_summary, 1e-5)


def test_replicas_are_vmapped_here_and_each_trains_as_its_seed_alone():
    fam = _families.build_family("vae_mlp")
    batches = fam.batches(jax.random.key(1), K)
    keys = train.seed_keys([0, 1])
    both, _ = train.compile_fused(fam.step, replicas=True)(train.init_replicas(fam.init, keys), batches)
    alone = train.compile_fused(fam.step)
    for i in range(2):
        solo, _ = alone(fam.init(keys[i]), batches)
        _close(jax.tree.map(lambda x: x[i], both.params), solo.params, 1e-4)  # batched kernels: rounding only
