"""A small CNN classifier on MNIST, trained with the whole runtime.

It shows the runtime at work (explicit state, fused steps, checkpoints and exact resume, one or
many devices, several hosts with `--distributed`), and its trained network is the feature
extractor with which later experiments compute FID/KID of generated digits: the parameters are
saved to `<workdir>/classifier.msgpack` (flax msgpack, no pickle) and loaded with
`genjax.train.load_params`.

Offline, MNIST is the embedded MNIST test split: 9,000 images to train on and 1,000 held out
(`genjax.data`). Targets: >= 98.5% held-out accuracy (full config), >= 90% with `--quick`.

    python -m experiments.mnist_classifier [--quick] [--steps N] [--checkpoint-every N]
        [--workdir DIR] [--seed N] [--distributed ...]
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._framework import Built, Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: Literal["mnist", "fashion_mnist", "cifar10"] = "mnist"
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    steps: int = 3_000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    dropout_rate: float = 0.3
    augment_shift: int = 2  # random translations of up to this many pixels (0: none)
    features_dim: int = 128
    checkpoint_every: int = 500
    log_every: int = 100
    eval_every: int = 500
    keep_checkpoints: int = 3
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"


QUICK = {"steps": 300, "batch_size": 64, "checkpoint_every": 100, "log_every": 50, "eval_every": 100}


def build(config: Config, num_classes: int, image_shape: tuple[int, ...] = (28, 28, 1),
          dtype: str = "float32") -> Built:
    """The classifier (`model`), `init(key) -> TrainState` for images of `image_shape`, its
    `loss_fn` (AdamW on a warm-up + cosine learning rate) and the train `step` made from it.
    With `dtype="bfloat16"` the loss runs the network in bfloat16 (`genjax.train.mixed_precision`:
    float32 master weights, gradients and loss)."""
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import nn, train

    model = nn.MnistClassifier(num_classes=num_classes, features_dim=config.features_dim,
                               dropout_rate=config.dropout_rate)
    warmup = min(config.warmup_steps, config.steps // 2)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, max(config.steps, warmup + 1))
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    apply = train.mixed_precision(model.apply, dtype)

    def init(key):
        params = model.init(jax.random.fold_in(key, 0), jnp.zeros((1, *image_shape)))["params"]
        return train.TrainState.create(params=params, tx=tx, key=jax.random.fold_in(key, 1))

    def loss_fn(params, batch, key, state):
        shift_key, dropout_key = jax.random.split(key)
        x = batch["image"].astype(jnp.float32) / 255.0  # [B, H, W, C]
        if config.augment_shift:
            x = random_shift(shift_key, x, config.augment_shift)
        logits = apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})  # [B, K]
        loss = jnp.mean(nn.cross_entropy_loss(logits, batch["label"]))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, ({"accuracy": accuracy}, {})

    return Built(model=model, init=init, step=train.make_train_step(loss_fn), loss_fn=loss_fn)


def random_shift(key, x, max_shift: int):
    """Translates each image of x [B, H, W, C] by up to `max_shift` pixels (zero fill)."""
    import jax
    import jax.numpy as jnp

    b, h, w, c = x.shape
    m = max_shift
    padded = jnp.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * m + 1)  # [B, 2]
    return jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)


def make_evaluator(model, images, labels, batch_size: int = 1000):
    """`params -> (accuracy, predictions)` over a whole split, in fixed-size jitted batches."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import train

    @train.jit
    def predict(params, x):
        return jnp.argmax(model.apply({"params": params}, x.astype(jnp.float32) / 255.0), -1)

    def evaluate(params):
        preds = train.map_batched(lambda x: predict(params, x), images, batch_size=batch_size)
        return float(np.mean(preds == labels)), preds

    return evaluate


def run(ctx: Context) -> dict:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import data, report, train

    cfg: Config = ctx.config
    train_ds = data.load_images(cfg.dataset, "train", source=cfg.data_source, data_dir=cfg.data_dir)
    test_ds = data.load_images(cfg.dataset, "test", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"data: {train_ds.description} ({train_ds.num_examples} train / {test_ds.num_examples} test)")

    built = build(cfg, train_ds.num_classes, train_ds.image_shape)
    model = built.model
    loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                           process_index=jax.process_index(), process_count=jax.process_count())
    evaluate = make_evaluator(model, test_ds.images, test_ds.labels)
    state = built.init(jax.random.key(cfg.seed))
    result = ctx.fit(state, built.step, loader,
                     eval_fn=lambda s: {"accuracy": evaluate(s.params)[0]}, eval_every=cfg.eval_every)
    accuracy, preds = evaluate(result.state.params)
    digest = train.digest(result.state)
    if ctx.is_main_process:
        train.save_params(ctx.workdir / "classifier.msgpack", result.state.params)
    ctx.log(f"held-out accuracy {accuracy:.4f} after {int(result.state.step)} steps; digest {digest[:16]}")

    # report ----------------------------------------------------------------------------------
    rep = ctx.report
    rep.text(f"Data: {train_ds.description}; evaluated on {test_ds.description}. "
             f"Model: `genjax.nn.MnistClassifier` (features {cfg.features_dim}), AdamW, "
             f"{cfg.steps} steps of batch {cfg.batch_size}.")
    history = report.read_jsonl(ctx.workdir / "metrics.jsonl")
    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].plot(steps, [r["loss"] for r in history])
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (mean over each logging interval)")
    axes[1].plot(steps, [r["accuracy"] for r in history], label="train (batches)")
    ev = [(r["step"], r["eval/accuracy"]) for r in history if "eval/accuracy" in r]
    if ev:
        axes[1].plot(*zip(*ev), "o-", label="held-out")
    axes[1].set_ylim(max(0.0, min(a for _, a in ev) - 0.05) if ev else 0.0, 1.0)
    axes[1].set_title("accuracy")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("step")
    rep.figure(fig, "training_curves", caption="loss and accuracy over training")

    k = train_ds.num_classes
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (test_ds.labels, preds), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    rep.figure(fig, "confusion", caption="held-out confusion matrix")

    wrong = np.flatnonzero(preds != test_ds.labels)[:32]
    if len(wrong):
        cols = 8
        rows = -(-len(wrong) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3))
        for ax in np.ravel(axes):
            ax.axis("off")
        for ax, i in zip(np.ravel(axes), wrong):
            ax.imshow(test_ds.images[i, ..., 0], cmap="gray_r")
            ax.set_title(f"{test_ds.labels[i]}->{preds[i]}", fontsize=8)
        rep.figure(fig, "misclassified", caption="held-out digits it gets wrong (true -> predicted)")

    target = 0.90 if ctx.quick else 0.985
    rep.table(
        ["held-out accuracy", "target", "steps", "train examples", "test examples", "steps/s", "data"],
        [(accuracy, target, int(result.state.step), train_ds.num_examples, test_ds.num_examples,
          train.steps_per_second(result.history), train_ds.source)],
        caption="final evaluation",
    )
    return {
        "test_accuracy": accuracy,
        "target_accuracy": target,
        "steps": int(result.state.step),
        "params_digest": digest,
        "resumed_from": result.resumed_from,
        "steps_per_s": train.steps_per_second(result.history),
        "dataset": train_ds.as_dict(),
        "test_dataset": test_ds.as_dict(),
        "classifier_params": "classifier.msgpack",
    }


EXPERIMENT = Experiment(
    name="mnist_classifier",
    title="MNIST classifier: the runtime at work, and the features for FID",
    description="A small CNN trained with explicit state, fused steps, checkpoints and exact resume.",
    config=Config,
    quick=QUICK,
    run=run,
    trains=True,
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
