"""Fused multi-step execution, replicas (vmap), data parallelism (pmap, sharding), the fit loop."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any, Callable, Literal, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from genjax import _backend
from genjax.train._checkpoint import Checkpointer
from genjax.train._state import Metrics, PyTree, TrainState, params_digest

DATA_AXIS = "data"
REPLICA_AXIS = "replica"
Parallel = Literal["auto", "none", "pmap", "sharded"]
ReplicaMode = Literal["auto", "vmap", "loop"]
StepFn = Callable[..., tuple[TrainState, Metrics]]  # (state, batch, axis_name=None)


class NonFiniteError(FloatingPointError):
    """A metric became NaN or infinite; the run stopped before saving anything after it."""

    def __init__(self, step: int, metric: str, value: float):
        self.step, self.metric, self.value = step, metric, value
        super().__init__(
            f"non-finite {metric} = {value} at step {step}; stopped without saving this state "
            "(the last good checkpoint is kept)"
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `fit` at the end of a chunk, after saving a checkpoint there.

    Attributes: `step` (the step reached), `checkpoint` (the step of the newest checkpoint, which
    a new `fit` on the same workdir resumes from; None without a workdir), `description`.
    """

    def __init__(self, step: int, checkpoint: int | None, description: str):
        self.step, self.checkpoint, self.description = step, checkpoint, description
        if checkpoint is None:
            then = "no workdir, so nothing was saved"
        else:
            then = f"the same command resumes from checkpoint {checkpoint}"
        super().__init__(f"[{description}] interrupted at step {step}; {then}")


class _DeferredInterrupt:
    """While active, the first SIGINT only sets `requested` (fit stops at the end of the chunk
    and saves a checkpoint there); a second one raises KeyboardInterrupt at once. Installed only
    in the main thread, where Python's own handler is in place (a caller's handler is kept), and
    in single-process runs (one process stopping alone would leave the others in a collective)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        import signal
        import threading

        if (threading.current_thread() is threading.main_thread() and jax.process_count() == 1
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.requested:
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


class BatchSource(Protocol):
    def batches(self, start_step: int, num_steps: int) -> PyTree: ...


# ------------------------------------------------------------------------------ fused steps


def fuse_steps(step_fn: StepFn, axis_name: str | None = None) -> Callable[[TrainState, PyTree], tuple[TrainState, dict]]:
    """`(state, batches[K, ...]) -> (state, summary)`: K steps in one `lax.scan`.

    The metrics are aggregated on device: `summary["mean"][name]` is the mean over the K steps
    and `summary["first_nonfinite"][name]` the index of the first step where it was NaN or
    infinite (-1 if none), so the host needs no sync per step.
    """

    def run(state: TrainState, batches: PyTree):
        def body(s, batch):
            return step_fn(s, batch, axis_name=axis_name) if axis_name else step_fn(s, batch)

        state, metrics = jax.lax.scan(body, state, batches)
        summary = {
            "mean": jax.tree.map(lambda m: jnp.mean(m.astype(jnp.float32), axis=0), metrics),
            "last": jax.tree.map(lambda m: m[-1], metrics),
            "first_nonfinite": jax.tree.map(_first_nonfinite, metrics),
        }
        return state, summary

    return run


def _first_nonfinite(m: jax.Array) -> jax.Array:
    bad = ~jnp.isfinite(m.reshape(m.shape[0], -1)).all(axis=1)
    return jnp.where(bad.any(), jnp.argmax(bad), -1)


def resolve_parallel(parallel: Parallel) -> str:
    """The execution mode that `parallel` names now: "auto" is "sharded" when JAX sees more than one
    device (`jax.device_count()`, every process's devices) and "none" on one; the others as given.

    Raises:
        ValueError: `parallel` is not one of "auto", "none", "pmap", "sharded".
    """
    if parallel not in ("auto", "none", "pmap", "sharded"):
        raise ValueError(f"parallel must be 'auto', 'none', 'pmap' or 'sharded', got {parallel!r}")
    if parallel == "auto":
        return "sharded" if jax.device_count() > 1 else "none"
    return parallel


def compile_fused(
    step_fn: StepFn,
    parallel: Parallel = "auto",
    replicas: bool = False,
    batches_per_replica: bool = False,
    replica_mode: ReplicaMode = "auto",
    batch_axis: int = 0,
) -> Callable:
    """The compiled fused step for one execution mode (the state is donated).

    - "auto" (the default): "sharded" with more than one device, else "none" (`resolve_parallel`).
    - "none": `jit` on one device.
    - "pmap": `pmap` over the local devices (state replicated, batches split on the batch axis,
      the step called with `axis_name=DATA_AXIS` so that it averages gradients with `lax.pmean` and
      sums cross-device statistics itself). Under `jax.distributed` the axis spans every process.
      What the step does not reduce over `axis_name` stays per device: the DCGAN generator's
      batch-norm statistics, and the GAN steps' latents z, drawn from the same key on every device,
      so that there pmap is not one device on the whole batch (the sharded mode is).
    - "sharded": `jit` over a `jax.sharding.Mesh` of all devices with axes (REPLICA_AXIS,
      DATA_AXIS) (`sharded_mesh`), inputs placed with `NamedSharding`s: each batch split along
      `batch_axis` over the data axis, the state replicated (with `replicas`: split along its
      replica axis over the replica axis). The step is the single-device step, called without
      `axis_name`: it sees the global batch, so every batch reduction (mean loss, gradients, the
      VQ-VAE's EMA codebook counts and sums, batch-norm statistics, `perplexity`) is already the
      one-device value on the whole batch, and XLA inserts the all-reduces. No step needs an
      explicit collective here (`jax.shard_map`, with `axis_name`, is for code written per device).
      The call places host inputs itself (process-local batches under `jax.distributed`) and
      returns the state on the mesh, so the next call takes it as it is.
    `replicas=True` trains a leading replica axis of the state (independent runs, e.g. seeds);
    the batches are shared unless `batches_per_replica`. `replica_mode` says how:
    "vmap" batches the replicas into one vectorized step; "loop" runs each replica's K steps in
    turn inside the one compiled program (`loop_replicas`; the stacked state is updated in
    place), so only one replica's working set is live at a time; "auto" is "vmap" on GPU/TPU and
    "loop" on CPU, where a vectorized step over many replicas streams their state through DRAM
    instead of the cache (vae_mlp, 16 replicas: 0.70x the throughput of one seed alone vmapped,
    1.02x looped; see benchmarks/); decided in Python when the step is built
    (`genjax._backend.auto_replica_mode`, off switch ``replica_loop``), and "vmap" wherever the
    sharded mode splits the replica axis over devices (a loop would slice a distributed axis).
    Each replica is the run of its seed alone: bit for bit with
    "loop", up to float rounding with "vmap" (batched kernels may sum in another order).

    Raises:
        ValueError: an unknown `parallel` or `replica_mode`.
    """
    parallel = resolve_parallel(parallel)
    if replica_mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"replica_mode must be 'auto', 'vmap' or 'loop', got {replica_mode!r}")
    if parallel == "sharded":
        return _ShardedFused(step_fn, replicas, batches_per_replica, replica_mode, batch_axis)
    fused = _fused_program(step_fn, DATA_AXIS if parallel == "pmap" else None, replicas, batches_per_replica,
                           replica_mode)
    if parallel == "pmap":
        return jax.pmap(fused, axis_name=DATA_AXIS, donate_argnums=0)
    return _backend.jit(fused, donate_argnums=0)


def _fused_program(step_fn: StepFn, axis_name: str | None, replicas: bool, batches_per_replica: bool,
                   replica_mode: ReplicaMode) -> Callable:
    fused = fuse_steps(step_fn, axis_name=axis_name)
    if not replicas:
        return fused
    if replica_mode == "auto":
        replica_mode = _backend.auto_replica_mode()  # program structure, chosen in Python
    return (vmap_replicas if replica_mode == "vmap" else loop_replicas)(fused, batches_per_replica)


def _replica_count(states: PyTree, batches: PyTree, batches_per_replica: bool) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(states)}
    if batches_per_replica:
        sizes |= {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batches)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"replicated states (and per-replica batches) need one common leading replica "
                         f"axis; got leading sizes {sorted(sizes, key=str)}")
    return sizes.pop()


def vmap_replicas(fn: Callable, batches_per_replica: bool = False) -> Callable:
    """`jax.vmap(fn, in_axes=(0, 0 if batches_per_replica else None))`, except that one replica
    runs `fn` itself on the squeezed state (XLA:CPU compiles a size-1 batch axis into transposed
    layouts and extra copies: 0.82x the plain step for vae_mlp).

    Replicated `TrainState`s share one step counter (`fit` starts, resumes and advances them
    together), so `fn` sees replica 0's `step` unbatched: a `lax.cond` on the step (e.g. "measure
    every 5th step") stays a branch instead of becoming a `select` that runs both sides for every
    replica. The returned states carry the step on every replica again.
    """
    axes = (0, 0 if batches_per_replica else None)
    batched = jax.vmap(fn, in_axes=axes)

    def run(states, batches):
        if _replica_count(states, batches, batches_per_replica) > 1:
            if isinstance(states, TrainState):
                step = states.step[0]
                return jax.vmap(lambda s, b: fn(s.replace(step=step), b), in_axes=axes)(states, batches)
            return batched(states, batches)
        squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
        out = fn(squeeze(states), squeeze(batches) if batches_per_replica else batches)
        return jax.tree.map(lambda x: x[None], out)

    return run


def loop_replicas(fn: Callable, batches_per_replica: bool = False) -> Callable:
    """`(states[R, ...], batches) -> (states[R, ...], outputs[R, ...])`, replica after replica.

    The same results as `jax.vmap(fn, in_axes=(0, 0 if batches_per_replica else None))`, computed
    by a `lax.scan` over the replica index: replica i is sliced out of the stacked state (the
    carry), runs `fn` and is written back in place; its outputs are stacked by the scan.
    """

    def run(states, batches):
        n = _replica_count(states, batches, batches_per_replica)

        def pick(tree, i):
            return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), tree)

        def body(states, i):
            state_i, out_i = fn(pick(states, i), pick(batches, i) if batches_per_replica else batches)
            states = jax.tree.map(lambda whole, part: jax.lax.dynamic_update_index_in_dim(whole, part, i, 0),
                                  states, state_i)
            return states, out_i

        return jax.lax.scan(body, states, jnp.arange(n))

    return run


# ------------------------------------------------------------------------------ placement


def local_batch_split(batches: PyTree, num_devices: int, batch_axis: int) -> PyTree:
    """[..., B, ...] -> [D, ..., B/D, ...]: device d gets rows d*B/D ... (d+1)*B/D - 1."""

    def split(x):
        x = np.asarray(x)
        b = x.shape[batch_axis]
        if b % num_devices:
            raise ValueError(f"batch size {b} is not divisible by the {num_devices} local devices")
        shape = x.shape[:batch_axis] + (num_devices, b // num_devices) + x.shape[batch_axis + 1 :]
        return np.moveaxis(x.reshape(shape), batch_axis, 0)

    return jax.tree.map(split, batches)


def mesh_shape(num_replicas: int | None, num_devices: int, num_processes: int = 1) -> tuple[int, int]:
    """(devices on the replica axis, devices on the data axis) of the sharded mode's mesh.

    Without replicas every device is on the data axis: (1, num_devices). With R replicas the replica
    axis gets r = gcd(R, num_devices) devices, the most that split the replicas evenly (each device
    holds R / r of them; replicas need no communication), and the data axis the other
    num_devices / r: 4 seeds on 8 devices are (4, 2), 16 seeds (8, 1), 3 seeds (1, 8) (all devices
    on the data axis, every device holding every replica). Under `jax.distributed`
    (`num_processes > 1`) the replicas stay whole on every process, (1, num_devices): each process
    loads only its slice of every batch, which the data axis then spans.

    Raises:
        ValueError, TypeError: a count that is not a positive Python int (`num_replicas` may be None).
    """
    from genjax import _checks

    num_devices = _checks.positive_int(num_devices, "num_devices")
    if _checks.positive_int(num_processes, "num_processes") > 1 or num_replicas is None:
        return 1, num_devices
    r = math.gcd(_checks.positive_int(num_replicas, "num_replicas"), num_devices)
    return r, num_devices // r


def sharded_mesh(num_replicas: int | None = None):
    """The `jax.sharding.Mesh` of the sharded mode: axes (REPLICA_AXIS, DATA_AXIS) of the shape
    `mesh_shape(num_replicas, jax.device_count(), jax.process_count())` over every device, laid
    out by `jax.make_mesh` (on TPU, in the order of the interconnect), with `Auto` axis types
    (the partitioner propagates shardings; the step needs no sharding annotations)."""
    from jax.sharding import AxisType

    shape = mesh_shape(num_replicas, jax.device_count(), jax.process_count())
    return jax.make_mesh(shape, (REPLICA_AXIS, DATA_AXIS), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=jax.devices())


def _is_key(x) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def _placed(x, sharding) -> bool:
    """Whether `x` is already an array on `sharding`'s mesh, laid out as `sharding` says."""
    from jax.sharding import NamedSharding

    return (isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding) and x.sharding.mesh == sharding.mesh
            and x.sharding.is_equivalent_to(sharding, x.ndim))


def _place_global(x, sharding):
    """A value that every process holds whole (the state) -> a global array with `sharding`."""
    if _placed(x, sharding):
        return x
    if _is_key(x):
        return jax.random.wrap_key_data(_place_global(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _place_batches(batches: PyTree, mesh, batch_axis: int, per_replica: bool) -> PyTree:
    """Process-local batches `[K, B, ...]` (per replica: `[R, K, B, ...]`) -> global arrays split
    along the batch axis over the data axis (and along R over the replica axis)."""
    from jax.sharding import NamedSharding, PartitionSpec

    axis = batch_axis + (2 if per_replica else 1)
    data_devices = mesh.shape[DATA_AXIS] // jax.process_count()  # this process's share of the data axis

    def put(x):
        spec = [None] * np.ndim(x)
        spec[axis] = DATA_AXIS
        if per_replica:
            spec[0] = REPLICA_AXIS
        sharding = NamedSharding(mesh, PartitionSpec(*spec))
        if _placed(x, sharding):
            return x
        x = np.asarray(x)
        if x.shape[axis] % data_devices:
            raise ValueError(f"the batch axis of each batch (axis {batch_axis}: {x.shape[axis]} examples on this "
                             f"process) must be divisible by the {data_devices} devices of the data axis here "
                             f"(mesh {dict(mesh.shape)})")
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batches)


class _ShardedFused:
    """`compile_fused(..., parallel="sharded")`: one `jit` per mesh (the replica count chooses it),
    with the output shardings pinned to the input ones, so a chunk's state feeds the next as it is."""

    def __init__(self, step_fn, replicas, batches_per_replica, replica_mode, batch_axis):
        self.step_fn, self.replicas, self.batches_per_replica = step_fn, replicas, batches_per_replica
        self.replica_mode, self.batch_axis = replica_mode, batch_axis
        self._programs: dict[tuple[int, ...], tuple[Any, Any, Callable]] = {}

    def program(self, state: PyTree, batches: PyTree):
        """(mesh, the state's sharding, the jitted fused step) for these inputs."""
        from jax.sharding import NamedSharding, PartitionSpec

        n = _replica_count(state, batches, self.batches_per_replica) if self.replicas else None
        mesh = sharded_mesh(n)
        shape = tuple(mesh.shape.values())
        if shape not in self._programs:
            mode = self.replica_mode
            if mode == "auto" and mesh.shape[REPLICA_AXIS] > 1:
                mode = "vmap"
            fused = _fused_program(self.step_fn, None, self.replicas, self.batches_per_replica, mode)
            # the state and the summary: [R, ...] split over the replica axis, or replicated
            sharding = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS) if self.replicas else PartitionSpec())
            self._programs[shape] = (mesh, sharding,
                                     _backend.jit(fused, donate_argnums=0, out_shardings=(sharding, sharding)))
        return self._programs[shape]

    def place(self, state: PyTree, batches: PyTree):
        mesh, sharding, jitted = self.program(state, batches)
        state = jax.tree.map(lambda x: _place_global(x, sharding), state)
        return jitted, state, _place_batches(batches, mesh, self.batch_axis, self.batches_per_replica)

    def __call__(self, state: PyTree, batches: PyTree):
        jitted, state, batches = self.place(state, batches)
        return jitted(state, batches)

    def lower(self, state: PyTree, batches: PyTree):
        jitted, state, batches = self.place(state, batches)
        return jitted.lower(state, batches)

    def _cache_size(self) -> int:
        return sum(jitted._cache_size() for _, _, jitted in self._programs.values())


def replicate_pmap(state: TrainState) -> TrainState:
    """A copy of `state` per local device, stacked on a leading axis (pmap's input layout)."""
    n = jax.local_device_count()
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), state)


def unreplicate_pmap(state: TrainState) -> TrainState:
    return jax.tree.map(lambda x: x[0], state)


# ------------------------------------------------------------------------------ distributed


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """`jax.distributed.initialize` from flags, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID, else the cluster's own variables (SLURM, Open MPI, TPU VMs: JAX detects them).

    On CPU it selects the gloo collectives so that processes can all-reduce over TCP.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    _backend.cpu_collectives()
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


# ------------------------------------------------------------------------------ the fit loop


@dataclasses.dataclass
class FitResult:
    state: TrainState  # unreplicated (for replicas: the leading axis is the replica)
    resumed_from: int | None  # the checkpoint step the run started from, or None
    history: list[dict[str, Any]]  # the records written to metrics.jsonl by this call
    compiles: int  # distinct compiled chunk lengths
    seconds: float  # wall clock of this call, `eval_fn`'s calls included
    eval_seconds: float = 0.0  # of which in `eval_fn`: `seconds - eval_seconds` is the training's cost


def chunk_ends(start: int, stop: int, *periods: int) -> list[int]:
    """Step numbers where a chunk ends: every multiple of each period, and `stop`."""
    ends = {stop}
    for p in periods:
        if p and p > 0:
            ends.update(range((start // p + 1) * p, stop, p))
    return sorted(e for e in ends if start < e <= stop)


def fit(
    state: TrainState,
    step_fn: StepFn,
    source: BatchSource | Sequence[BatchSource],
    *,
    num_steps: int,
    workdir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    log_every: int = 100,
    keep_checkpoints: int = 3,
    parallel: Parallel = "auto",
    replicas: bool = False,
    replica_mode: ReplicaMode = "auto",
    batch_axis: int = 0,
    metrics_log: Any = None,
    progress: bool = True,
    description: str = "train",
    on_log: Callable[[dict[str, Any]], None] | None = None,
    eval_fn: Callable[[TrainState], dict[str, Any]] | None = None,
    eval_every: int = 0,
) -> FitResult:
    """Trains `state` to `num_steps` steps, resuming from `<workdir>/checkpoints` if present.

    Steps run in chunks of `log_every` steps fused into one compiled `lax.scan` (a chunk also
    ends at each checkpoint step), so there is one host dispatch and one small metrics transfer
    per chunk. Checkpoints are written every `checkpoint_every` steps and at the end. Batches come
    from `source.batches(start_step, k)`, a pure function of (seed, step), so a resumed run sees
    the same data. With `replicas=True` the state has a leading replica axis; `source` may then
    be a sequence of sources, one per replica, and `replica_mode` says how the replicas run
    (`compile_fused`). `parallel` spreads the work over devices (`compile_fused`): "auto" (the
    default) is "sharded" with more than one device and "none" with one; "sharded" splits each
    batch along `batch_axis` over the mesh's data axis and, with replicas, the replicas over its
    replica axis (`mesh_shape` states the rule), and equals one device on the whole batch up to
    float rounding; "pmap" is kept for steps written per device. `eval_fn(state) -> metrics` (on the host-side,
    unreplicated state) runs every `eval_every` steps and at the end; its metrics join the record.
    Metrics records go to `metrics_log` (default: `metrics.jsonl` and TensorBoard event files in
    `workdir`), only on process 0.

    Ctrl-C (SIGINT, in the main thread of a single-process run) stops at the end of the current
    chunk: that step is checkpointed (with a workdir) and `TrainingInterrupted`, a
    KeyboardInterrupt, is raised; a second Ctrl-C stops at once (the newest checkpoint is kept).

    Raises:
        NonFiniteError: a metric became NaN/inf; nothing after the last good checkpoint is saved.
        TrainingInterrupted: Ctrl-C; a new call on the same workdir resumes where it stopped.
    """
    from genjax.report import MetricsLog, MetricsSinks, TensorBoardWriter

    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    parallel = resolve_parallel(parallel)
    is_main = jax.process_index() == 0
    per_replica_sources = isinstance(source, (list, tuple))
    if per_replica_sources and not replicas:
        raise ValueError("a sequence of batch sources needs replicas=True (one source per replica)")

    checkpointer = None
    resumed_from = None
    if workdir is not None:
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=keep_checkpoints)
        restored = checkpointer.restore_latest(state)
        if restored is not None:
            state = restored
            resumed_from = int(np.asarray(state.step).reshape(-1)[0])
        if metrics_log is None and is_main:
            metrics_log = MetricsSinks(MetricsLog(os.path.join(workdir, "metrics.jsonl")),
                                       TensorBoardWriter(os.path.join(workdir, "tensorboard")))
    start = int(np.asarray(state.step).reshape(-1)[0])
    if replicas and (np.ndim(state.step) != 1 or np.any(np.asarray(state.step) != start)):
        raise ValueError("replicas=True needs states with a leading replica axis that share one step count "
                         f"(e.g. from init_replicas); got step {np.asarray(state.step).tolist()}")
    if metrics_log is not None and is_main:
        metrics_log.truncate_after(start)
    if resumed_from is not None and is_main:
        print(f"[{description}] resumed from checkpoint at step {resumed_from}", file=sys.stderr, flush=True)

    compiled = compile_fused(step_fn, parallel, replicas=replicas, batches_per_replica=per_replica_sources,
                             replica_mode=replica_mode, batch_axis=batch_axis)
    if parallel == "pmap":
        state = replicate_pmap(state)
    else:  # the compiled step donates its input state: never donate the caller's own buffers
        state = jax.tree.map(jnp.copy, state)  # ("sharded" places a copy on the mesh at the first call)

    def get_batches(step, k):
        if per_replica_sources:
            parts = [s.batches(step, k) for s in source]
            b = jax.tree.map(lambda *xs: np.stack(xs), *parts)
            axis = batch_axis + 2  # [R, K, B, ...]
        else:
            b = source.batches(step, k)
            axis = batch_axis + 1  # [K, B, ...]
        if parallel == "pmap":
            return local_batch_split(b, jax.local_device_count(), axis)
        return b  # "sharded": placed on the mesh by the compiled step

    bar = None
    if progress and is_main and num_steps > start:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, initial=start, desc=description, unit="step", dynamic_ncols=True,
                   file=sys.stderr, mininterval=1.0)
    history: list[dict[str, Any]] = []
    lengths = set()
    eval_seconds = 0.0
    t0 = time.perf_counter()
    step = start
    last_saved = resumed_from
    interrupt = _DeferredInterrupt()
    try:
        interrupt.__enter__()
        for end in chunk_ends(start, num_steps, log_every, checkpoint_every, eval_every):
            k = end - step
            lengths.add(k)
            chunk_start = time.perf_counter()
            state, summary = compiled(state, get_batches(step, k))
            summary = jax.device_get(summary)
            if parallel == "pmap":
                summary = jax.tree.map(lambda x: x[0], summary)
            _check_finite(summary["first_nonfinite"], summary["last"], step)
            seconds = time.perf_counter() - chunk_start
            step = end
            record = {"step": step, **{k_: _scalar_or_list(v) for k_, v in summary["mean"].items()},
                      "steps_per_s": k / seconds}
            if eval_fn is not None and (end == num_steps or (eval_every and end % eval_every == 0)):
                eval_start = time.perf_counter()
                record.update({f"eval/{n}": _scalar_or_list(v)
                               for n, v in jax.device_get(eval_fn(_host_state(state, parallel))).items()})
                eval_seconds += time.perf_counter() - eval_start
            history.append(record)
            if metrics_log is not None and is_main:
                metrics_log.write(record)
            if on_log is not None:
                on_log(record)
            if bar is not None:
                bar.update(k)
                bar.set_postfix({n: _short(v) for n, v in record.items() if n not in ("step", "steps_per_s")},
                                refresh=False)
            if checkpointer is not None and (
                interrupt.requested or end == num_steps or (checkpoint_every and end % checkpoint_every == 0)
            ):
                checkpointer.save(_host_state(state, parallel))
                last_saved = end
            if interrupt.requested:
                raise TrainingInterrupted(end, last_saved, description)
        if interrupt.requested:  # Ctrl-C after the last check
            raise TrainingInterrupted(step, last_saved, description)
    finally:
        interrupt.__exit__()
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return FitResult(
        state=_host_state(state, parallel),
        resumed_from=resumed_from,
        history=history,
        compiles=len(lengths),
        seconds=time.perf_counter() - t0,
        eval_seconds=eval_seconds,
    )


def _host_state(state: TrainState, parallel: Parallel) -> TrainState:
    if parallel == "pmap":
        return unreplicate_pmap(state)
    if parallel == "sharded":
        return jax.tree.map(_to_host, state)
    return state


def _to_host(x):
    """A sharded global array -> the same values on the default device (replicated across
    processes: this process's copy)."""
    if _is_key(x):
        return jax.random.wrap_key_data(_to_host(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jnp.asarray(np.asarray(x if x.is_fully_addressable else x.addressable_data(0)))


def _check_finite(first_bad: dict, last: dict, chunk_start: int) -> None:
    for name, idx in first_bad.items():
        idx = np.asarray(idx)
        if (idx >= 0).any():
            i = int(idx[idx >= 0].min())
            raise NonFiniteError(chunk_start + i + 1, name, float(np.asarray(last[name]).reshape(-1)[0]))


def _scalar_or_list(v):
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v.tolist()


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return f"[{len(v)}]"
    return v


# ------------------------------------------------------------------------------ replicas


def init_replicas(init_fn: Callable[[jax.Array], TrainState], keys: jax.Array) -> TrainState:
    """One state per key, stacked on a leading replica axis (`jax.vmap(init_fn)(keys)`)."""
    return jax.vmap(init_fn)(keys)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def digest(state: TrainState) -> str:
    return params_digest(state.params)


def steps_per_second(history: list[dict[str, Any]]) -> float:
    rates = [r["steps_per_s"] for r in history[1:]] or [r["steps_per_s"] for r in history]
    return float(np.median(rates)) if rates else math.nan
