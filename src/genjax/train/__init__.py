"""Training runtime: explicit state, fused compiled steps, replicas, data parallelism, checkpoints.

    state = TrainState.create(params=params, tx=optax.adam(1e-3), key=jax.random.key(seed))
    step = make_train_step(loss_fn)           # (state, batch, axis_name=None) -> (state, metrics)
    result = fit(state, step, loader, num_steps=10_000, workdir="runs/x", checkpoint_every=1_000)

`fit` fuses `log_every` steps into one `lax.scan`, checkpoints with Orbax, resumes from the last
good checkpoint (a damaged one is reported, skipped and written again), stops on a non-finite
metric, and on Ctrl-C stops at the end of a chunk with a checkpoint there (`TrainingInterrupted`).
`parallel` spreads the batch over devices (and processes, after `initialize_distributed`):
"auto", the default, is "sharded" with more than one device (`jit` over a `jax.sharding.Mesh`,
batches split with `NamedSharding`, the step unchanged: the result of one device on the whole
batch) and "none" with one; "pmap" stays for steps written per device. `replicas=True` trains a
leading axis of independent states (seeds, learning rates) as one program: vmapped on GPU/TPU,
one replica after another on CPU (`replica_mode`; bit-for-bit the runs trained alone); sharded,
the replicas split over a replica axis of the mesh and each batch over its data axis
(`mesh_shape`). `mixed_precision(apply_fn, "bfloat16")` runs a network in bfloat16 inside a loss,
with float32 master weights, gradients and loss.

Around the steps: `with_ema(step, decay)` adds an EMA of the weights (with the usual warm-up),
`map_batched(fn, data, batch_size=B)` applies a compiled function to a whole split in batches of
one shape (the last one padded, nothing dropped), `time_compiled(fn, calls)` times calls of a
program compiled ahead of time, and `jit` is `jax.jit` with genjax's per-platform compiler options
(on CPU: XLA's own convolutions instead of YNNPACK's, see `genjax._backend`, ``conv_library``).
"""

from genjax._backend import jit
from genjax.train._apply import map_batched, time_compiled
from genjax.train._checkpoint import Checkpointer
from genjax.train._loop import (
    DATA_AXIS,
    REPLICA_AXIS,
    FitResult,
    NonFiniteError,
    TrainingInterrupted,
    chunk_ends,
    compile_fused,
    digest,
    fit,
    fuse_steps,
    init_replicas,
    initialize_distributed,
    local_batch_split,
    loop_replicas,
    mesh_shape,
    resolve_parallel,
    seed_keys,
    sharded_mesh,
    steps_per_second,
    vmap_replicas,
)
from genjax.train._precision import COMPUTE_DTYPES, compute_dtype, mixed_precision
from genjax.train._state import (
    TrainState,
    as_typed_key,
    ema_update,
    load_params,
    make_train_step,
    params_digest,
    pmean_if,
    save_params,
    set_hyperparams,
    with_ema,
)

__all__ = [
    "COMPUTE_DTYPES",
    "Checkpointer",
    "DATA_AXIS",
    "REPLICA_AXIS",
    "FitResult",
    "NonFiniteError",
    "TrainingInterrupted",
    "TrainState",
    "as_typed_key",
    "chunk_ends",
    "compile_fused",
    "compute_dtype",
    "digest",
    "ema_update",
    "fit",
    "fuse_steps",
    "init_replicas",
    "loop_replicas",
    "map_batched",
    "vmap_replicas",
    "load_params",
    "initialize_distributed",
    "jit",
    "local_batch_split",
    "make_train_step",
    "mesh_shape",
    "mixed_precision",
    "params_digest",
    "pmean_if",
    "resolve_parallel",
    "save_params",
    "seed_keys",
    "set_hyperparams",
    "sharded_mesh",
    "steps_per_second",
    "time_compiled",
    "with_ema",
]
