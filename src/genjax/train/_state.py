"""The training state pytree and the pure train step."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
Metrics = dict[str, jax.Array]

# A loss function sees the parameters, one batch, the step's PRNG key and the whole state (for
# non-gradient state such as batch statistics), and returns the scalar loss and auxiliary output:
# a dict of scalar metrics and a dict of updated non-gradient state (empty if there is none).
LossFn = Callable[[PyTree, PyTree, jax.Array, "TrainState"], tuple[jax.Array, tuple[Metrics, dict[str, PyTree]]]]


class TrainState(flax.struct.PyTreeNode):
    """Everything a run mutates, as one immutable pytree.

    Attributes:
        step: int32 scalar, the number of training steps taken.
        params: the trainable parameters.
        opt_state: the optax state of `tx`.
        key: the run's base PRNG key (a typed key); step `s` draws from `fold_in(key, s)`, so the
            noise of a step depends on (seed, step) only and a resumed run draws the same noise.
        extras: named non-gradient state, e.g. "ema_params", "codebook", "batch_stats",
            "historical_average"; a dict so that model families add their own slots.
        tx: the optax transformation (static: part of the tree structure, not of its leaves).
            For models trained as several parts with their own optimizers and update schedules
            (a GAN's generator and discriminator), `create` also takes a dict
            `{part: transformation}` with `params` a dict of the same keys; it is stored as a
            tuple of pairs (static fields must be hashable), `opt_state` is a dict per part, and
            `update_part` steps one part.
    """

    step: jax.Array  # [] int32
    params: PyTree
    opt_state: PyTree
    key: jax.Array  # [] typed PRNG key
    extras: dict[str, PyTree]
    tx: optax.GradientTransformation | tuple[tuple[str, optax.GradientTransformation], ...] = (
        flax.struct.field(pytree_node=False))

    @classmethod
    def create(
        cls,
        *,
        params: PyTree,
        tx: optax.GradientTransformation | Mapping[str, optax.GradientTransformation],
        key: jax.Array,
        extras: Mapping[str, PyTree] | None = None,
    ) -> "TrainState":
        if isinstance(tx, Mapping):
            for name, t in tx.items():
                if not isinstance(t, optax.GradientTransformation):
                    raise TypeError(f"tx[{name!r}] must be an optax.GradientTransformation, got {type(t).__name__}")
            if not isinstance(params, Mapping) or set(params) != set(tx):
                got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
                raise ValueError(f"with a tx per part, params must be a dict with the parts {sorted(tx)}; got {got}")
            opt_state = {name: t.init(params[name]) for name, t in tx.items()}
            tx = tuple(sorted(tx.items()))
        elif isinstance(tx, optax.GradientTransformation):
            opt_state = tx.init(params)
        else:
            raise TypeError(f"tx must be an optax.GradientTransformation (or a dict of them), got {type(tx).__name__}")
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt_state,
            key=as_typed_key(key, "key"),
            extras=dict(extras or {}),
            tx=tx,
        )

    def step_key(self) -> jax.Array:
        """This step's key: `fold_in(base_key, step)`."""
        return jax.random.fold_in(self.key, self.step)

    @property
    def parts(self) -> dict[str, optax.GradientTransformation]:
        """The per-part transformations (empty for a single `tx`)."""
        # (a GradientTransformation is a NamedTuple itself, so test for it first)
        return {} if isinstance(self.tx, optax.GradientTransformation) else dict(self.tx)

    def _with_extras(self, extras: Mapping[str, PyTree] | None) -> dict[str, PyTree]:
        new_extras = dict(self.extras)
        if extras:
            unknown = set(extras) - set(self.extras)
            if unknown:
                raise KeyError(f"extras {sorted(unknown)} are not slots of this state; slots: {sorted(self.extras)}")
            new_extras.update(extras)
        return new_extras

    def apply_gradients(self, grads: PyTree, extras: Mapping[str, PyTree] | None = None) -> "TrainState":
        """One optimizer step of all parameters, step + 1; `extras` replaces the slots it names."""
        if self.parts:
            state = self
            for name in self.parts:
                state = state.update_part(name, grads[name])
            return state.next_step(extras)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            extras=self._with_extras(extras),
        )

    def update_part(self, name: str, grads: PyTree) -> "TrainState":
        """One optimizer step of the part `name` only (the step counter does not move)."""
        parts = self.parts
        if name not in parts:
            raise KeyError(f"{name!r} is not a part of this state; parts: {sorted(parts) or 'none (single tx)'}")
        updates, part_state = parts[name].update(grads, self.opt_state[name], self.params[name])
        return self.replace(
            params={**self.params, name: optax.apply_updates(self.params[name], updates)},
            opt_state={**self.opt_state, name: part_state},
        )

    def next_step(self, extras: Mapping[str, PyTree] | None = None) -> "TrainState":
        """Ends a training step made of `update_part` calls: step + 1, and new extras."""
        return self.replace(step=self.step + 1, extras=self._with_extras(extras))


def as_typed_key(key: Any, name: str) -> jax.Array:
    """Accepts a typed key (`jax.random.key`) or a raw uint32[2] key; returns a typed key."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(f"{name} must be a PRNG key from jax.random.key(seed), got dtype {key.dtype} shape {key.shape}")


def pmean_if(tree: PyTree, axis_name: str | None) -> PyTree:
    """`lax.pmean` over `axis_name` when the step runs under pmap; the identity otherwise."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def make_train_step(loss_fn: LossFn) -> Callable[..., tuple[TrainState, Metrics]]:
    """The standard step `(state, batch, axis_name=None) -> (state, metrics)` for `loss_fn`.

    Under pmap (`axis_name` given) the gradients, the metrics and the updated non-gradient state
    are averaged across devices with `lax.pmean`, so that every replica stays identical and the
    step equals a single-device step on the whole batch (for losses that are batch means).
    The returned metrics always include "loss".
    """

    def train_step(state: TrainState, batch: PyTree, axis_name: str | None = None) -> tuple[TrainState, Metrics]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, new_extras)), grads = grad_fn(state.params, batch, state.step_key(), state)
        grads = pmean_if(grads, axis_name)
        metrics = pmean_if({"loss": loss, **metrics}, axis_name)
        new_extras = pmean_if(new_extras, axis_name)
        return state.apply_gradients(grads, extras=new_extras), metrics

    return train_step


def params_digest(params: PyTree) -> str:
    """sha256 of a pytree's leaves (path, dtype, shape and bytes of each, in tree order)."""
    h = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(params))
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def set_hyperparams(state: TrainState, part: str | None = None, **values: Any) -> TrainState:
    """Sets hyper-parameters of an `optax.inject_hyperparams` optimizer inside the state.

    With a vector of values and a vmapped state this trains one replica per value, e.g.
    `jax.vmap(lambda s, lr: set_hyperparams(s, learning_rate=lr))(states, jnp.array([1e-3, 3e-4]))`.
    For a state with a tx per part, `part` names the part whose optimizer is changed.
    """
    opt_state = state.opt_state if part is None else state.opt_state[part]
    if not hasattr(opt_state, "hyperparams"):
        raise TypeError("set_hyperparams needs tx built with optax.inject_hyperparams(...)")
    unknown = set(values) - set(opt_state.hyperparams)
    if unknown:
        raise KeyError(f"unknown hyper-parameters {sorted(unknown)}; this optimizer has {sorted(opt_state.hyperparams)}")
    hyper = dict(opt_state.hyperparams)
    for k, v in values.items():
        hyper[k] = jnp.asarray(v, dtype=jnp.asarray(hyper[k]).dtype)
    new = opt_state._replace(hyperparams=hyper)
    return state.replace(opt_state=new if part is None else {**state.opt_state, part: new})


def save_params(path, params: PyTree) -> None:
    """Writes a parameter pytree as msgpack (flax.serialization; no pickle), atomically."""
    from flax import serialization

    from genjax.report import atomic_write_bytes

    atomic_write_bytes(path, serialization.msgpack_serialize(jax.tree.map(np.asarray, jax.device_get(params))))


def load_params(path) -> PyTree:
    """Reads a parameter pytree written by `save_params` (nested dicts of numpy arrays).

    Raises:
      genjax.report.DamagedFileError (a ValueError): the file is truncated or not msgpack.
    """
    from flax import serialization

    from genjax.report import DamagedFileError

    with open(path, "rb") as f:
        raw = f.read()
    try:
        tree = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack's errors (ExtraData, FormatError, ValueError, ...) share no base
        raise DamagedFileError(path, f"{type(err).__name__}: {err}") from None
    if not isinstance(tree, dict):
        raise DamagedFileError(path, f"expected a parameter tree (a mapping), got {type(tree).__name__}")
    return tree


def ema_update(average: PyTree, value: PyTree, decay: float | jax.Array) -> PyTree:
    """Exponential moving average of a pytree: decay * average + (1 - decay) * value.

    For EMA weights kept in `state.extras["ema_params"]`; returns the new average.
    """
    return jax.tree.map(lambda a, v: decay * a + (1.0 - decay) * v, average, value)


def with_ema(
    step: Callable[..., tuple[TrainState, Metrics]],
    decay: float,
    *,
    warmup: bool = True,
    slot: str = "ema_params",
) -> Callable[..., tuple[TrainState, Metrics]]:
    """`step` followed by an exponential moving average of the parameters in `extras[slot]`.

    The returned step `(state, batch, axis_name=None) -> (state, metrics)` runs `step`, then, with
    n = the new `state.step` (the steps taken, this one included),

        extras[slot] <- d_n * extras[slot] + (1 - d_n) * params
        d_n = min(decay, (1 + n) / (10 + n))     with `warmup` (the default)
        d_n = decay                              without

    The warm-up is the `num_updates` rule of TensorFlow's `tf.train.ExponentialMovingAverage`,
    which the DDPM reference code uses: early on the average forgets the initial weights fast.
    Its closed form: while (1 + n) / (10 + n) <= decay, starting from an average a_0 with the
    parameters held at p, a_n = P_n a_0 + (1 - P_n) p with P_n = prod_{k=1..n} (1 + k) / (10 + k)
    = 10! (n + 1)! / (n + 10)!.

    The state must have the slot, holding its own buffers (the fused steps of `fit` donate the
    whole state), e.g. `TrainState.create(..., extras={"ema_params": jax.tree.map(jnp.copy,
    params)})`. The metrics are `step`'s.

    Args:
        step: a train step `(state, batch, axis_name=None) -> (state, metrics)`.
        decay: the EMA decay in [0, 1] (a Python number).
        warmup: use the warm-up rule above (True) or the constant `decay` (False).
        slot: the `state.extras` entry that holds the average.

    Returns:
        The train step with the EMA update.
    """
    from genjax import _checks

    if not callable(step):
        raise TypeError(f"`step` must be a train step (state, batch, axis_name=None) -> (state, metrics), "
                        f"got {type(step).__name__}")
    decay = _checks.number(decay, "decay", 0.0, 1.0)
    if not isinstance(warmup, bool):
        raise TypeError(f"`warmup` must be True or False, got {warmup!r}")
    if not isinstance(slot, str):
        raise TypeError(f"`slot` must be the name of a state.extras entry (a str), got {slot!r}")

    def ema_step(state: TrainState, batch: PyTree, axis_name: str | None = None) -> tuple[TrainState, Metrics]:
        if slot not in state.extras:
            raise KeyError(f"with_ema needs state.extras[{slot!r}] (a copy of the parameters); "
                           f"the state's extras are {sorted(state.extras)}")
        state, metrics = step(state, batch, axis_name)
        if warmup:
            n = state.step.astype(jnp.float32)
            d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
        else:
            d = decay
        average = ema_update(state.extras[slot], state.params, d)
        return state.replace(extras={**state.extras, slot: average}), metrics

    return ema_step
