"""The runtime helpers the experiments share: train.with_ema, train.map_batched,
train.time_compiled and report.image_grid."""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import report, train

# ------------------------------------------------------------------------------ map_batched


def _row_fn(counter):
    """A jitted per-row function with a pytree output; `counter` counts its traces."""

    @jax.jit
    def fn(batch):
        counter.append(1)
        x = batch["x"].astype(jnp.float32)  # [B, 3]
        return {"tanh": jnp.tanh(x @ jnp.arange(6.0).reshape(3, 2)), "norm": jnp.sum(x**2, axis=1) + batch["y"]}

    return fn


@pytest.mark.parametrize("n", [1, 4, 5, 7, 10, 23])
def test_map_batched_equals_the_unbatched_apply_and_keeps_every_row(n):
    """Batch 5: a single row, fewer rows than a batch, exactly one and two batches, and
    remainders of 2 and 3 rows. Reference: the same function applied to all rows at once."""
    rng = np.random.default_rng(n)
    data = {"x": rng.integers(0, 255, (n, 3)).astype(np.uint8), "y": rng.normal(size=n).astype(np.float32)}
    fn = _row_fn([])
    out = train.map_batched(fn, data, batch_size=5)
    ref = jax.device_get(fn(data))
    assert set(out) == {"tanh", "norm"}
    assert out["tanh"].shape == (n, 2) and out["norm"].shape == (n,)  # nothing dropped, nothing repeated
    assert isinstance(out["norm"], np.ndarray)
    np.testing.assert_allclose(out["tanh"], ref["tanh"], rtol=1e-6)
    np.testing.assert_allclose(out["norm"], ref["norm"], rtol=1e-6)


def test_map_batched_compiles_once_for_a_fixed_batch():
    traces = []
    fn = _row_fn(traces)
    for n in (1, 3, 8, 13):
        data = {"x": np.ones((n, 3), np.uint8), "y": np.zeros(n, np.float32)}
        assert train.map_batched(fn, data, batch_size=4)["norm"].shape == (n,)
    assert len(traces) == 1  # every call saw the shape [4, 3]


def test_map_batched_takes_jax_arrays_and_empty_data():
    traces = []

    @jax.jit
    def double(x):
        traces.append(1)
        return 2 * x

    out = train.map_batched(double, jnp.arange(7.0), batch_size=3)
    np.testing.assert_array_equal(out, 2 * np.arange(7.0))
    empty = train.map_batched(lambda x: (x[:, :2], x.sum(1)), np.zeros((0, 5), np.float32), batch_size=3)
    assert empty[0].shape == (0, 2) and empty[1].shape == (0,) and empty[0].dtype == np.float32
    assert len(traces) == 1


def test_map_batched_bad_input_is_named():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="batch_size"):
        train.map_batched(lambda b: b, x, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        train.map_batched(lambda b: b, x, batch_size=2.0)
    with pytest.raises(ValueError, match="share their leading axis"):
        train.map_batched(lambda b: b, (x, np.zeros((3, 2))), batch_size=2)
    with pytest.raises(ValueError, match="leading axis of rows"):
        train.map_batched(lambda b: b, np.float32(1.0), batch_size=2)
    with pytest.raises(ValueError, match="one row per input row"):
        train.map_batched(lambda b: jnp.sum(b), x, batch_size=2)
    with pytest.raises(TypeError, match="fn"):
        train.map_batched("not a function", x, batch_size=2)


# ------------------------------------------------------------------------------ with_ema


def _constant_state(param: float, average: float):
    return train.TrainState.create(params={"w": jnp.full((2,), param)}, tx=optax.sgd(0.0), key=jax.random.key(0),
                                   extras={"ema_params": {"w": jnp.full((2,), average)}, "other": jnp.zeros(())})


def _tick(state, batch, axis_name=None):
    """A step that only counts (the parameters stay where they are)."""
    return state.replace(step=state.step + 1), {"loss": jnp.float32(batch)}


def _run(step, state, n):
    step = jax.jit(step)
    for _ in range(n):
        state, metrics = step(state, 0.5)
    return state, metrics


def warmup_product(n: int) -> float:
    """P_n = prod_{k=1..n} (1 + k) / (10 + k) = 10! (n + 1)! / (n + 10)!, exactly."""
    return float(Fraction(math.factorial(10) * math.factorial(n + 1), math.factorial(n + 10)))


def test_warmup_product_closed_form_is_the_product():
    for n in (1, 2, 7, 40):
        assert warmup_product(n) == pytest.approx(math.prod((1 + k) / (10 + k) for k in range(1, n + 1)), rel=1e-12)
    assert warmup_product(1) == pytest.approx(2 / 11)


@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_with_ema_warmup_equals_its_closed_form(n):
    """a_0 = 1, parameters held at p = 3: a_n = P_n * 1 + (1 - P_n) * 3 (decay 1: no cap)."""
    state, metrics = _run(train.with_ema(_tick, 1.0), _constant_state(3.0, 1.0), n)
    p = warmup_product(n)
    np.testing.assert_allclose(state.extras["ema_params"]["w"], p * 1.0 + (1 - p) * 3.0, rtol=1e-5)
    assert float(metrics["loss"]) == 0.5  # the wrapped step's metrics, unchanged
    assert float(state.extras["other"]) == 0.0 and int(state.step) == n


def test_with_ema_caps_the_warmup_at_the_decay_and_can_run_without_it():
    # (1 + n) / (10 + n) <= 0.9 for n <= 80: the warm-up rules the first 80 steps, then 0.9.
    state, _ = _run(train.with_ema(_tick, 0.9), _constant_state(0.0, 1.0), 100)
    np.testing.assert_allclose(state.extras["ema_params"]["w"], warmup_product(80) * 0.9**20, rtol=1e-4)
    state, _ = _run(train.with_ema(_tick, 0.9, warmup=False), _constant_state(0.0, 1.0), 10)
    np.testing.assert_allclose(state.extras["ema_params"]["w"], 0.9**10, rtol=1e-5)


def test_with_ema_follows_a_trained_model():
    """With a real step the average moves towards the trained parameters (a decay of 0 copies them)."""

    def loss_fn(params, batch, key, state):
        return jnp.sum((params["w"] - batch) ** 2), ({}, {})

    state = _constant_state(0.0, 0.0).replace(tx=optax.sgd(0.1))
    state = state.replace(opt_state=state.tx.init(state.params))
    step = train.with_ema(train.make_train_step(loss_fn), 0.0)
    state, metrics = step(state, jnp.ones(2))
    np.testing.assert_allclose(state.extras["ema_params"]["w"], state.params["w"])
    np.testing.assert_allclose(state.params["w"], 0.2)  # w - 0.1 * 2 (w - 1)
    assert float(metrics["loss"]) == 2.0


def test_with_ema_bad_input_is_named():
    with pytest.raises(ValueError, match="decay"):
        train.with_ema(_tick, 1.5)
    with pytest.raises(TypeError, match="decay"):
        train.with_ema(_tick, "0.9")
    with pytest.raises(TypeError, match="step"):
        train.with_ema(None, 0.9)
    state = train.TrainState.create(params={"w": jnp.zeros(())}, tx=optax.sgd(0.0), key=jax.random.key(0))
    with pytest.raises(KeyError, match="ema_params"):
        train.with_ema(_tick, 0.9)(state, 0.0)


# ------------------------------------------------------------------------------ time_compiled


def test_time_compiled_compiles_once_and_returns_every_output():
    traces = []

    def fn(x, k):
        traces.append(1)
        return x * k

    calls = [(jnp.arange(3.0), jnp.float32(k)) for k in (1, 2, 3)]
    outputs, seconds = train.time_compiled(fn, calls)
    assert len(traces) == 1
    for (x, k), out in zip(calls, outputs):
        np.testing.assert_array_equal(out, x * k)
    assert math.isfinite(seconds) and seconds >= 0.0
    with pytest.raises(ValueError, match="calls"):
        train.time_compiled(fn, [])
    with pytest.raises(TypeError, match="fn"):
        train.time_compiled(3, calls)


# ------------------------------------------------------------------------------ image_grid


def test_image_grid_places_images_row_by_row():
    """Reference: the reshape/transpose tiling of a full grid (rows x cols images, no padding)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 4, 5, 1)).astype(np.float32)
    grid = report.image_grid(x, cols=3)
    ref = x[..., 0].reshape(2, 3, 4, 5).transpose(0, 2, 1, 3).reshape(8, 15)
    np.testing.assert_array_equal(grid, ref)
    np.testing.assert_array_equal(report.image_grid(x[..., 0], cols=3), ref)  # [N, H, W] alike


def test_image_grid_pads_fills_and_leaves_out():
    x = np.stack([np.full((2, 3), i, np.float32) for i in range(1, 6)])  # image i is all i+1
    grid = report.image_grid(x, cols=2, pad=1, fill=-1.0)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1) and grid.dtype == np.float32
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(grid[1 + 3 * r:3 + 3 * r, 1 + 4 * c:4 + 4 * c], i + 1)
    np.testing.assert_array_equal(grid[7:9, 5:8], -1.0)  # the sixth cell has no image
    assert np.all(grid[0] == -1.0) and np.all(grid[:, 0] == -1.0) and np.all(grid[3] == -1.0)
    assert (grid == -1.0).sum() == grid.size - 5 * 6
    small = report.image_grid(x, cols=2, rows=1)  # images beyond rows * cols are left out
    np.testing.assert_array_equal(small, np.concatenate([x[0], x[1]], axis=1))
    colour = report.image_grid(np.ones((3, 2, 2, 3)), cols=3, fill=0.0)
    assert colour.shape == (2, 6, 3) and np.all(colour == 1.0)


def test_image_grid_bad_input_is_named():
    x = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="cols"):
        report.image_grid(x, cols=0)
    with pytest.raises(TypeError, match="cols"):
        report.image_grid(x, cols=2.0)
    with pytest.raises(ValueError, match="pad"):
        report.image_grid(x, cols=2, pad=-1)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        report.image_grid(np.zeros((3, 3)), cols=2)
    with pytest.raises(ValueError, match="empty"):
        report.image_grid(np.zeros((0, 3, 3)), cols=2)
    assert report.image_grid(np.zeros((0, 3, 3)), cols=2, rows=1).shape == (3, 6)
