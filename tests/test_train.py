"""genjax.train: explicit state, fused steps, replicas, pmap, several processes, exact resume."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import report, train
from tests.train_worker import RegressionSource, make

WORKER = Path(__file__).with_name("train_worker.py")
REPO = WORKER.parent.parent


def run_worker(*args: str, env_extra: dict | None = None, timeout: float = 240) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    out = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- the state and step


def test_step_key_is_fold_in_of_base_key_and_step():
    init, _ = make(noise=0.0)
    state = init(jax.random.key(3)).replace(step=jnp.asarray(17, jnp.int32))
    expected = jax.random.fold_in(jax.random.key(3), 17)
    assert jnp.array_equal(jax.random.key_data(state.step_key()), jax.random.key_data(expected))


def test_create_rejects_bad_arguments():
    with pytest.raises(TypeError, match="tx must be an optax.GradientTransformation"):
        train.TrainState.create(params={}, tx=lambda g: g, key=jax.random.key(0))
    with pytest.raises(TypeError, match="PRNG key"):
        train.TrainState.create(params={}, tx=optax.sgd(1.0), key=jnp.zeros(3))


def test_fit_equals_a_plain_loop_of_jitted_steps():
    """Fusing steps into lax.scan chunks changes nothing: same params as one jit call per step."""
    init, step = make(noise=0.1)
    source = RegressionSource(seed=0, batch_size=16)
    result = train.fit(init(jax.random.key(0)), step, source, num_steps=30, log_every=7, progress=False)
    state = init(jax.random.key(0))
    jstep = jax.jit(step)
    for s in range(30):
        state, _ = jstep(state, source.batch(s))
    assert int(result.state.step) == 30
    assert_trees_close(result.state.params, state.params, rtol=1e-5, atol=1e-6)
    # chunks end at multiples of log_every and at the end: 7, 14, 21, 28, 30
    assert [r["step"] for r in result.history] == [7, 14, 21, 28, 30]


def test_eval_fn_runs_at_its_steps_and_its_time_is_counted_apart():
    """`eval_fn` runs every `eval_every` steps and at the end, its metrics join those records
    (`eval/<name>`), and `eval_seconds` holds its time (here at least its 4 sleeps of 50 ms),
    so `seconds - eval_seconds` is the training's own cost."""
    import time

    init, step = make(noise=0.1)
    seen = []

    def eval_fn(state):
        seen.append(int(state.step))
        time.sleep(0.05)
        return {"w_norm": jnp.sum(jnp.square(state.params["w1"]))}

    result = train.fit(init(jax.random.key(0)), step, RegressionSource(seed=0, batch_size=16), num_steps=30,
                       log_every=10, eval_fn=eval_fn, eval_every=8, progress=False)
    assert seen == [8, 16, 24, 30]
    assert [r["step"] for r in result.history if "eval/w_norm" in r] == seen
    assert 0.2 <= result.eval_seconds < result.seconds


def test_fused_step_compiles_once():
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    compiled = train.compile_fused(step)
    state = init(jax.random.key(0))
    for s in (0, 5, 10):
        state, _ = compiled(state, source.batches(s, 5))
    assert compiled._cache_size() == 1  # the second and third calls reused the first compilation
    result = train.fit(init(jax.random.key(0)), step, source, num_steps=40, log_every=10, progress=False)
    assert result.compiles == 1


def test_metrics_are_aggregated_on_device():
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    state = init(jax.random.key(0))
    _, summary = train.fuse_steps(step)(state, source.batches(0, 4))
    per_step = []
    for s in range(4):
        state, m = step(state, source.batch(s))
        per_step.append(float(m["loss"]))
    np.testing.assert_allclose(float(summary["mean"]["loss"]), np.mean(per_step), rtol=1e-5)
    assert int(summary["first_nonfinite"]["loss"]) == -1


# ---------------------------------------------------------------------------- replicas (vmap)


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_replicated_seeds_equal_separate_runs(mode):
    init, step = make(noise=0.1)
    seeds = [0, 1, 2, 3]
    states = train.init_replicas(init, train.seed_keys(seeds))
    sources = [RegressionSource(seed=s, batch_size=16) for s in seeds]
    together = train.fit(states, step, sources, num_steps=25, log_every=25, replicas=True, replica_mode=mode,
                         progress=False)
    for i, s in enumerate(seeds):
        alone = train.fit(init(jax.random.key(s)), step, sources[i], num_steps=25, log_every=25, progress=False)
        assert_trees_close(jax.tree.map(lambda x: x[i], together.state.params), alone.state.params)
    assert np.shape(together.history[-1]["loss"]) == (4,)


def assert_replica_is_the_run_alone(together, summary, i, alone, alone_summary):
    """Every replicated leaf (params, optimizer state, metrics) is [R, *solo shape], and its row i
    equals the solo run's leaf bit for bit."""
    r = np.shape(together.step)[0]
    for x, y in zip(jax.tree.leaves((together.params, together.opt_state, summary)),
                    jax.tree.leaves((alone.params, alone.opt_state, alone_summary)), strict=True):
        assert np.shape(x) == (r, *np.shape(y)) and np.array_equal(np.asarray(x)[i], np.asarray(y))


def test_looped_replicas_are_the_separate_runs_bit_for_bit():
    """replica_mode="loop" runs each replica's own K-step program: every bit of every replica's
    state and metrics equals that seed trained alone (vmap only promises closeness)."""
    init, step = make(noise=0.1)
    seeds = [0, 5, 9]
    source = RegressionSource(seed=0, batch_size=16)
    batches = source.batches(0, 6)
    looped = train.compile_fused(step, replicas=True, replica_mode="loop")
    together, summary = looped(train.init_replicas(init, train.seed_keys(seeds)), batches)
    single = train.compile_fused(step)
    for i, s in enumerate(seeds):
        alone, alone_summary = single(init(jax.random.key(s)), batches)
        assert_replica_is_the_run_alone(together, summary, i, alone, alone_summary)
        assert int(together.step[i]) == 6
        assert np.array_equal(jax.random.key_data(together.key[i]), jax.random.key_data(jax.random.key(s)))


def test_replica_modes_agree_and_auto_is_loop_on_cpu():
    init, step = make(noise=0.1)
    states = lambda: train.init_replicas(init, train.seed_keys([1, 2]))  # noqa: E731
    sources = [RegressionSource(seed=s, batch_size=16) for s in (1, 2)]
    batches = jax.tree.map(lambda *xs: np.stack(xs), *[s.batches(0, 5) for s in sources])
    out = {mode: train.compile_fused(step, replicas=True, batches_per_replica=True, replica_mode=mode)(
        states(), batches) for mode in ("vmap", "loop", "auto")}
    assert_trees_close((out["vmap"][0].params, out["vmap"][1]), (out["loop"][0].params, out["loop"][1]))
    assert jax.default_backend() == "cpu"
    assert train.digest(out["auto"][0]) == train.digest(out["loop"][0])


def test_one_vmapped_replica_runs_the_plain_step():
    """vmap over a single replica squeezes the axis (a size-1 batch axis costs XLA:CPU transposes):
    bit for bit the seed alone, with the replica axis kept on every output."""
    init, step = make(noise=0.1)
    batches = RegressionSource(seed=0, batch_size=16).batches(0, 4)
    vmapped = train.compile_fused(step, replicas=True, replica_mode="vmap")
    states = train.init_replicas(init, train.seed_keys([7]))
    # the compiled program is the plain one: plain jax.vmap here compiles 2 transposes, the seed alone 0
    assert " transpose(" not in vmapped.lower(states, batches).compile().as_text()
    one, summary = vmapped(states, batches)
    alone, alone_summary = train.compile_fused(step)(init(jax.random.key(7)), batches)
    assert_replica_is_the_run_alone(one, summary, 0, alone, alone_summary)
    assert one.step.shape == (1,) and one.key.shape == (1,)
    with pytest.raises(ValueError, match="leading replica axis"):
        train.vmap_replicas(lambda s, b: (s, {}))({"a": jnp.zeros((1, 2)), "b": jnp.zeros((2, 2))}, None)


def test_vmapped_replicas_share_the_step_so_a_cond_on_it_stays_a_branch():
    """A `lax.cond` on `state.step` (gan_vanishing_gradients measures every k-th step) is a real
    branch under vmapped replicas: the step is shared, not batched into a `select` of both sides.
    The results are the looped replicas' (each replica's own program)."""
    init, base = make(noise=0.1)

    def step(state, batch):
        new, metrics = base(state, batch)
        probe = jax.lax.cond(state.step % 3 == 0, lambda p: jnp.sum(jnp.sin(p["w1"])), lambda p: jnp.zeros(()),
                             new.params)
        return new, {**metrics, "probe": probe}

    states = lambda: train.init_replicas(init, train.seed_keys([4, 5]))  # noqa: E731
    batches = RegressionSource(seed=0, batch_size=16).batches(0, 6)
    vmapped = train.compile_fused(step, replicas=True, replica_mode="vmap")
    hlo = vmapped.lower(states(), batches).compile().as_text()
    assert " conditional(" in hlo  # plain jax.vmap makes it a select: no conditional at all
    out = vmapped(states(), batches)
    looped = train.compile_fused(step, replicas=True, replica_mode="loop")(states(), batches)
    assert_trees_close((out[0].params, out[1]), (looped[0].params, looped[1]))
    assert out[0].step.tolist() == [6, 6]
    assert float(out[1]["mean"]["probe"][0]) != 0.0
    with pytest.raises(ValueError, match="share one step count"):
        train.fit(states().replace(step=jnp.asarray([0, 3], jnp.int32)), step, RegressionSource(0, 16),
                  num_steps=6, replicas=True, progress=False)


def test_looped_replicas_compile_once_and_reject_bad_input():
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    looped = train.compile_fused(step, replicas=True, replica_mode="loop")
    state = train.init_replicas(init, train.seed_keys([0, 1]))
    for s in (0, 5):
        state, _ = looped(state, source.batches(s, 5))
    assert looped._cache_size() == 1
    with pytest.raises(ValueError, match="replica_mode must be 'auto', 'vmap' or 'loop', got 'pmap'"):
        train.compile_fused(step, replicas=True, replica_mode="pmap")
    ragged = {"a": jnp.zeros((2, 3)), "b": jnp.zeros((3, 3))}
    with pytest.raises(ValueError, match=r"one common leading replica axis; got leading sizes \[2, 3\]"):
        train.loop_replicas(lambda s, b: (s, {}))(ragged, None)
    with pytest.raises(ValueError, match="leading replica axis"):
        train.loop_replicas(lambda s, b: (s, {}))({"a": jnp.zeros(())}, None)


def test_vmapped_replicas_checkpoint_and_resume(tmp_path):
    init, step = make(noise=0.1)
    seeds = [0, 1, 2]
    sources = [RegressionSource(seed=s, batch_size=16) for s in seeds]
    fresh = lambda: train.init_replicas(init, train.seed_keys(seeds))
    kw = dict(log_every=10, checkpoint_every=10, replicas=True, progress=False)
    straight = train.fit(fresh(), step, sources, num_steps=30, **kw)
    train.fit(fresh(), step, sources, num_steps=20, workdir=tmp_path, **kw)
    resumed = train.fit(fresh(), step, sources, num_steps=30, workdir=tmp_path, **kw)
    assert resumed.resumed_from == 20
    assert train.digest(resumed.state) == train.digest(straight.state)


def test_vmapped_learning_rates_equal_separate_runs():
    def loss_fn(params, batch, key, state):
        return jnp.mean((batch["x"] @ params["w"] - batch["y"][:, 0]) ** 2), ({}, {})

    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    step = train.make_train_step(loss_fn)
    rates = jnp.array([1e-3, 1e-2, 3e-2])

    def init(key):
        return train.TrainState.create(params={"w": jnp.zeros(8)}, tx=tx, key=key)

    states = jax.vmap(lambda k, lr: train.set_hyperparams(init(k), learning_rate=lr))(
        train.seed_keys([0, 0, 0]), rates)
    source = RegressionSource(seed=0, batch_size=16)
    together = train.fit(states, step, source, num_steps=20, log_every=20, replicas=True, progress=False)
    for i, lr in enumerate(rates):
        alone = train.fit(train.set_hyperparams(init(jax.random.key(0)), learning_rate=lr), step, source,
                          num_steps=20, log_every=20, progress=False)
        assert_trees_close(together.state.params["w"][i], alone.state.params["w"])
    assert not np.allclose(together.state.params["w"][0], together.state.params["w"][2])


# ---------------------------------------------------------------------------- checkpoints, resume


def test_resume_is_bitwise_identical(tmp_path):
    init, step = make(noise=0.1)
    source = RegressionSource(seed=0, batch_size=16)
    straight = train.fit(init(jax.random.key(0)), step, source, num_steps=50, log_every=10, progress=False)
    kw = dict(log_every=10, checkpoint_every=20, progress=False, workdir=tmp_path)
    first = train.fit(init(jax.random.key(0)), step, source, num_steps=30, **kw)
    assert first.resumed_from is None
    second = train.fit(init(jax.random.key(0)), step, source, num_steps=50, **kw)
    assert second.resumed_from == 30
    assert train.digest(second.state) == train.digest(straight.state)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [30, 40, 50]  # keep=3
    steps = [r["step"] for r in report.read_jsonl(tmp_path / "metrics.jsonl")]
    assert steps == [10, 20, 30, 40, 50]  # no step logged twice across the restart


def test_last_k_checkpoints_are_kept(tmp_path):
    init, step = make(noise=0.0)
    train.fit(init(jax.random.key(0)), step, RegressionSource(0, 16), num_steps=60, log_every=10,
              checkpoint_every=10, keep_checkpoints=2, workdir=tmp_path, progress=False)
    assert train.Checkpointer(tmp_path / "checkpoints").all_steps() == [50, 60]


# A damaged checkpoint is found from its manifest before Orbax reads anything, so no abandoned
# Orbax read is left to fail in the background ("Event loop is closed" at exit): any
# unraisable exception fails the test.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, damage, capsys):
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    kw = dict(log_every=10, checkpoint_every=10, progress=False, workdir=tmp_path)
    train.fit(init(jax.random.key(0)), step, source, num_steps=30, **kw)
    latest = tmp_path / "checkpoints" / "30"
    # the array data files (Orbax's OCDBT store); damage every one of them
    targets = [p for p in latest.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert targets
    for target in targets:
        data = target.read_bytes()
        if damage == "truncate":
            target.write_bytes(data[: len(data) // 2])
        elif damage == "flip":
            target.write_bytes(data[:-40] + bytes(b ^ 0xFF for b in data[-40:]))
        else:
            target.unlink()
    capsys.readouterr()
    restored = train.Checkpointer(tmp_path / "checkpoints").restore_latest(init(jax.random.key(0)))
    assert int(restored.step) == 20
    err = capsys.readouterr().err
    assert err.count("checkpoints/30 is unreadable or corrupted") == 1 and "falling back" in err
    assert "Traceback" not in err and "Event loop is closed" not in err
    # fit resumes from step 20 and writes step 30 again: a later restore finds it good, silently
    straight30 = train.fit(init(jax.random.key(0)), step, source, num_steps=30, log_every=10, progress=False)
    again = train.fit(init(jax.random.key(0)), step, source, num_steps=30, **kw)
    assert again.resumed_from == 20 and train.digest(again.state) == train.digest(straight30.state)
    capsys.readouterr()
    restored = train.Checkpointer(tmp_path / "checkpoints").restore_latest(init(jax.random.key(0)))
    assert int(restored.step) == 30 and capsys.readouterr().err == ""
    assert train.digest(restored) == train.digest(straight30.state)
    # and fit resumes from step 30 to the same end as a run that never stopped
    straight = train.fit(init(jax.random.key(0)), step, source, num_steps=40, log_every=10, progress=False)
    resumed = train.fit(init(jax.random.key(0)), step, source, num_steps=40, **kw)
    assert resumed.resumed_from == 30
    assert train.digest(resumed.state) == train.digest(straight.state)


def test_a_checkpoint_without_manifest_is_still_restored_and_verified(tmp_path, capsys):
    """Checkpoints written before manifests existed (or whose manifest a kill prevented) are
    verified by their content sha256 alone."""
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    kw = dict(log_every=10, checkpoint_every=10, progress=False, workdir=tmp_path)
    first = train.fit(init(jax.random.key(0)), step, source, num_steps=20, **kw)
    for manifest in (tmp_path / "checkpoints").glob("*/genjax_manifest.json"):
        manifest.unlink()
    capsys.readouterr()
    restored = train.Checkpointer(tmp_path / "checkpoints").restore_latest(init(jax.random.key(0)))
    assert int(restored.step) == 20 and train.digest(restored) == train.digest(first.state)
    assert capsys.readouterr().err == ""


def _interrupt_at(steps: set[int], times: int = 1):
    """An `on_log` callback that delivers SIGINT `times` times when a chunk ends at one of `steps`."""

    def on_log(record):
        if record["step"] in steps:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)

    return on_log


def test_ctrl_c_stops_at_the_chunk_end_checkpoints_it_and_resume_is_exact(tmp_path):
    init, step = make(noise=0.1)
    source = RegressionSource(seed=0, batch_size=16)
    straight = train.fit(init(jax.random.key(0)), step, source, num_steps=50, log_every=10, progress=False)
    kw = dict(log_every=10, checkpoint_every=20, progress=False, workdir=tmp_path)
    with pytest.raises(train.TrainingInterrupted) as info:
        train.fit(init(jax.random.key(0)), step, source, num_steps=50, on_log=_interrupt_at({30}), **kw)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.step, info.value.checkpoint) == (30, 30)
    assert "interrupted at step 30; the same command resumes from checkpoint 30" in str(info.value)
    assert train.Checkpointer(tmp_path / "checkpoints").all_steps() == [20, 30]  # 30: saved on the way out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put Python's handler back
    resumed = train.fit(init(jax.random.key(0)), step, source, num_steps=50, **kw)
    assert resumed.resumed_from == 30
    assert train.digest(resumed.state) == train.digest(straight.state)
    assert [r["step"] for r in report.read_jsonl(tmp_path / "metrics.jsonl")] == [10, 20, 30, 40, 50]


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    init, step = make(noise=0.0)
    source = RegressionSource(seed=0, batch_size=16)
    kw = dict(log_every=10, checkpoint_every=20, progress=False, workdir=tmp_path)
    with pytest.raises(KeyboardInterrupt) as info:
        train.fit(init(jax.random.key(0)), step, source, num_steps=50, on_log=_interrupt_at({30}, times=2), **kw)
    assert not isinstance(info.value, train.TrainingInterrupted)  # raised in the callback, no save
    assert train.Checkpointer(tmp_path / "checkpoints").all_steps() == [20]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = train.fit(init(jax.random.key(0)), step, source, num_steps=50, **kw)
    assert resumed.resumed_from == 20


def test_ctrl_c_without_a_workdir_says_nothing_was_saved():
    init, step = make(noise=0.0)
    with pytest.raises(train.TrainingInterrupted, match="interrupted at step 10; no workdir, so nothing was saved"):
        train.fit(init(jax.random.key(0)), step, RegressionSource(0, 16), num_steps=30, log_every=10,
                  progress=False, on_log=_interrupt_at({10}))


def test_nonfinite_loss_stops_with_step_and_metric_and_keeps_last_good_checkpoint(tmp_path):
    def loss_fn(params, batch, key, state):
        loss = jnp.mean((batch["x"] @ params["w"] - batch["y"][:, 0]) ** 2)
        loss = jnp.where(state.step >= 24, jnp.nan, loss)  # the 25th step goes bad
        return loss, ({}, {})

    state = train.TrainState.create(params={"w": jnp.zeros(8)}, tx=optax.sgd(1e-2), key=jax.random.key(0))
    with pytest.raises(train.NonFiniteError, match=r"non-finite loss .* at step 25") as err:
        train.fit(state, train.make_train_step(loss_fn), RegressionSource(0, 16), num_steps=40,
                  log_every=10, checkpoint_every=10, workdir=tmp_path, progress=False)
    assert err.value.step == 25 and err.value.metric == "loss"
    assert train.Checkpointer(tmp_path / "checkpoints").all_steps() == [10, 20]


# ---------------------------------------------------------------------------- devices, processes


@pytest.fixture(scope="module")
def single() -> dict:
    """The reference run on one device: 40 steps of the worker's default batch (16)."""
    return run_worker("--mode", "single", "--steps", "40", "--batch-size", "16")


# the meshes of the replica checks on 1, 2, 4 and 8 devices: (replica devices, data devices)
REPLICA_MESHES = {1: {2: [1, 1], 3: [1, 1]}, 2: {2: [2, 1], 3: [1, 2]}, 4: {2: [2, 2], 3: [1, 4]},
                  8: {2: [2, 4], 3: [1, 8]}}


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_every_parallel_mode_equals_one_device_on_the_whole_batch(devices):
    """On 1 (this process), 2, 4 and 8 virtual CPU devices (train_worker.py --mode devices): "pmap",
    "sharded" and "auto" (sharded on several devices, "none" on one) train the regression model as
    one device does on the whole batch; so do seeds as replicas on the (replica, data) mesh,
    whose state is split along the replica axis and whose batches along both; two steps of the
    VQ-VAE experiment's EMA-codebook step sharded give one device's codebook (its counts and sums
    are global without `axis_name`); `vq.ema_update` with `axis_name` under `jax.shard_map` gives
    the whole batch's update; a batch the data axis cannot split is refused; and (on 8 devices, to
    keep the time down) two steps of the grid GAN, whose batches are split on their axis 1 and
    whose latents are drawn at the global batch's shape, equal one device's."""
    from tests.train_worker import device_checks

    if devices == 1:
        assert jax.device_count() == 1
        result = device_checks(steps=20)
    else:
        result = run_worker("--mode", "devices", "--steps", "20", *(["--gan"] if devices == 8 else []),
                            env_extra={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert result["devices"] == devices
    assert result["auto"] == ("sharded" if devices > 1 else "none")
    for name in ("regression/sharded", "regression/pmap", "replicas2/diff", "replicas3/diff"):
        assert result[name] < 1e-5, (name, result[name])  # float32 rounding of 20 Adam steps
    for r, (on_replicas, on_data) in REPLICA_MESHES[devices].items():
        assert result[f"replicas{r}/mesh"] == [on_replicas, on_data] == list(train.mesh_shape(r, devices))
        assert result[f"replicas{r}/state_spec"] == [train.REPLICA_AXIS]
        assert result[f"replicas{r}/state_shard"] == [r // on_replicas, 8, 32]  # w1 [R, 8, 32]
        assert result[f"replicas{r}/batch_shard"] == [r // on_replicas, 2, 16 // on_data, 8]  # x [R, K, B, 8]
    assert result["vqvae/params"] < 1e-4 and result["vqvae/codebook"] < 1e-4
    assert result["vqvae/perplexity"] < 1e-3
    assert result["shard_map/ema_update"] < 1e-5
    if devices > 1:
        assert f"must be divisible by the {devices} devices of the data axis" in result["indivisible_batch"]
    if devices == 8:  # (not so under pmap, where every device draws the same latents)
        assert result["gan/params"] < 1e-5


def test_mesh_shape_puts_replicas_on_the_largest_even_split_and_the_rest_on_data():
    assert train.mesh_shape(None, 8) == (1, 8)
    assert train.mesh_shape(4, 8) == (4, 2)  # gcd(4, 8) = 4 devices on replicas, 2 on the batch
    assert train.mesh_shape(16, 8) == (8, 1)  # two replicas per device, no batch split
    assert train.mesh_shape(6, 4) == (2, 2)
    assert train.mesh_shape(3, 8) == (1, 8)  # no even split: every device holds every replica
    assert train.mesh_shape(4, 8, num_processes=2) == (1, 8)  # each process loads its slice of each batch
    with pytest.raises(ValueError, match=r"`num_replicas` must be an int in \[1, inf\], got 0"):
        train.mesh_shape(0, 8)
    with pytest.raises(ValueError, match=r"`num_devices` must be an int in \[1, inf\], got 0"):
        train.mesh_shape(2, 0)
    with pytest.raises(TypeError, match="`num_replicas` must be a Python int"):
        train.mesh_shape(2.0, 8)
    assert train.sharded_mesh(5).axis_names == (train.REPLICA_AXIS, train.DATA_AXIS)


def test_parallel_is_checked_and_auto_is_the_default():
    import inspect

    init, step = make(noise=0.0)
    assert inspect.signature(train.fit).parameters["parallel"].default == "auto"
    assert inspect.signature(train.compile_fused).parameters["parallel"].default == "auto"
    assert train.resolve_parallel("auto") == "none"  # one device here
    assert train.resolve_parallel("pmap") == "pmap"
    with pytest.raises(ValueError, match="parallel must be 'auto', 'none', 'pmap' or 'sharded', got 'foo'"):
        train.fit(init(jax.random.key(0)), step, RegressionSource(0, 16), num_steps=2, parallel="foo", progress=False)
    with pytest.raises(ValueError, match="parallel must be 'auto', 'none', 'pmap' or 'sharded', got 'gpu'"):
        train.compile_fused(step, "gpu")


def test_mixed_precision_runs_bfloat16_with_float32_gradients_and_outputs():
    """The network's matmul takes bfloat16 operands, its output and the gradient with respect to the
    float32 parameters are float32 (the transpose of a cast casts back), integer and key
    arguments pass unchanged, and float32 is the function itself."""
    seen = {}

    def net(params, x, t, key):
        seen.update(t=t.dtype, key=jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key), x=x.dtype)
        return jnp.tanh(x @ params["w"] + params["b"]) * t[:, None]

    params = {"w": jax.random.normal(jax.random.key(0), (16, 4)), "b": jnp.zeros(4)}
    x = jax.random.normal(jax.random.key(1), (8, 16))
    t = jnp.arange(8, dtype=jnp.int32)
    low = train.mixed_precision(net, "bfloat16")
    jaxpr = jax.make_jaxpr(low)(params, x, t, jax.random.key(2))
    (dot,) = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    assert [str(v.aval.dtype) for v in dot.invars] == ["bfloat16", "bfloat16"]
    assert seen == {"t": jnp.int32, "key": True, "x": jnp.bfloat16}
    out = low(params, x, t, jax.random.key(2))
    assert out.dtype == jnp.float32
    # bfloat16 keeps 8 significant bits: relative error 2^-8 per rounding, a few roundings here
    np.testing.assert_allclose(out, net(params, x, t, jax.random.key(2)), rtol=3e-2, atol=3e-2)
    loss = lambda f: lambda p: jnp.sum(f(p, x, t, jax.random.key(2)) ** 2)  # noqa: E731
    grads, exact = jax.grad(loss(low))(params), jax.grad(loss(net))(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert_trees_close(grads, exact, rtol=5e-2, atol=5e-2 * float(jnp.max(jnp.abs(exact["w"]))))
    assert train.mixed_precision(net, "float32") is net and train.mixed_precision(net, jnp.float32) is net
    for bad in ("float16", "int8", "fp8"):
        with pytest.raises(ValueError, match=rf"dtype must be one of \['float32', 'bfloat16'\], got '{bad}'"):
            train.mixed_precision(net, bad)


def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path, single):
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--mode", "dist", "--steps", "40", "--batch-size", "16",
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
             "--workdir", str(tmp_path), "--checkpoint-every", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for i in range(2)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [o["process"] for o in outs] == [0, 1] and outs[0]["devices"] == 2
    assert outs[0]["digest"] == outs[1]["digest"]  # the two processes hold the same parameters
    assert_trees_close(outs[0]["params"], single["params"], rtol=1e-5, atol=1e-6)
    assert train.Checkpointer(tmp_path / "checkpoints").all_steps() == [20, 40]  # written once, coordinated
    assert len(report.read_jsonl(tmp_path / "metrics.jsonl")) == 4  # only process 0 logs


def _latest_checkpoint(workdir: Path) -> int:
    d = workdir / "checkpoints"
    steps = [int(p.name) for p in d.iterdir() if p.name.isdigit()] if d.exists() else []
    return max(steps, default=-1)


def test_sigkill_at_any_moment_then_resume_gives_the_same_digest(tmp_path):
    """Kills a run four times at random moments once it has made progress (a save every 2 steps,
    so kills land during saves as well as during training), then lets it finish."""
    # 160 steps: each of the four kills waits for 12 more saved steps (and up to 0.3 s), about 90 in all
    args = ["--mode", "single", "--steps", "160", "--log-every", "2", "--checkpoint-every", "2", "--noise", "0.1"]
    reference = run_worker(*args)
    workdir = tmp_path / "run"
    rng = random.Random(0)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    kills = 0
    for _ in range(4):
        before = _latest_checkpoint(workdir)
        proc = subprocess.Popen([sys.executable, str(WORKER), *args, "--workdir", str(workdir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        deadline = time.time() + 120
        while proc.poll() is None and _latest_checkpoint(workdir) <= before + 10 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
    final = run_worker(*args, "--workdir", str(workdir))
    assert kills == 4, "the run finished before it could be killed four times; make it longer"
    assert final["resumed_from"] is not None and final["resumed_from"] < 160
    assert final["digest"] == reference["digest"]
    steps = [r["step"] for r in report.read_jsonl(workdir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 160


def test_parts_with_their_own_optimizers_update_independently():
    """A GAN-style state: two parts, each with its own optimizer, stepped separately."""
    params = {"generator": {"w": jnp.ones(3)}, "discriminator": {"w": jnp.ones(2)}}
    state = train.TrainState.create(params=params, key=jax.random.key(0),
                                    tx={"generator": optax.sgd(0.1), "discriminator": optax.adam(0.1)})
    grads_d = {"w": jnp.array([1.0, -1.0])}
    s1 = state.update_part("discriminator", grads_d)
    assert int(s1.step) == 0
    np.testing.assert_array_equal(s1.params["generator"]["w"], params["generator"]["w"])  # untouched
    # Adam's first step moves each coordinate by lr * sign(g) (Kingma & Ba 2015, Algorithm 1).
    np.testing.assert_allclose(s1.params["discriminator"]["w"], [0.9, 1.1], rtol=1e-5)
    s2 = s1.update_part("generator", {"w": jnp.ones(3)}).next_step()
    assert int(s2.step) == 1
    np.testing.assert_allclose(s2.params["generator"]["w"], [0.9, 0.9, 0.9], rtol=1e-6)
    with pytest.raises(KeyError, match="'critic' is not a part"):
        state.update_part("critic", grads_d)
    with pytest.raises(ValueError, match="params must be a dict with the parts"):
        train.TrainState.create(params={"g": 1.0}, tx={"generator": optax.sgd(1.0)}, key=jax.random.key(0))
    # jit-able and checkpointable like any state
    jax.jit(lambda s: s.update_part("generator", {"w": jnp.ones(3)}).next_step())(state)
