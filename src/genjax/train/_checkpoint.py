"""Checkpoints with Orbax: `<workdir>/checkpoints/<step>/`, atomic, verified, last k kept.

Orbax writes each checkpoint into a temporary directory and renames it into place when it is
complete, so a kill during a save leaves only a temporary directory, which is ignored. On top of
that every checkpoint carries the sha256 of its own content; a restore recomputes it, and a
truncated or corrupted checkpoint is reported and skipped in favour of the previous one.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from genjax.train._state import TrainState, params_digest

log = logging.getLogger("genjax.train")


def state_to_tree(state: TrainState) -> dict[str, Any]:
    """The state's array leaves as host numpy arrays (typed keys as their raw key data)."""
    tree = {
        "step": state.step,
        "params": state.params,
        "opt_state": state.opt_state,
        "key": jax.random.key_data(state.key),
        "extras": state.extras,
    }
    return jax.tree.map(np.asarray, jax.device_get(tree))


def tree_to_state(tree: dict[str, Any], template: TrainState) -> TrainState:
    """Puts restored leaves back into `template`'s structure (with its static fields)."""
    like = state_to_tree(template)
    leaves = jax.tree.leaves(tree)
    treedef = jax.tree.structure(like)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"checkpoint has {len(leaves)} arrays but the state has {treedef.num_leaves}")
    restored = jax.tree.unflatten(treedef, leaves)
    return template.replace(
        step=restored["step"],
        params=restored["params"],
        opt_state=restored["opt_state"],
        key=jax.random.wrap_key_data(restored["key"], impl=jax.random.key_impl(template.key)),
        extras=restored["extras"],
    )


def _step_of(tree: dict[str, Any]) -> int:
    """The step of a state tree; replicas (a leading axis) all share one step."""
    return int(np.asarray(tree["step"]).reshape(-1)[0])


class _OrphanedReadErrors(logging.Filter):
    """Drops asyncio's "Future exception was never retrieved" records for reads of checkpoints
    that `restore_latest` has already reported as corrupted: when one array of a damaged
    checkpoint fails to load, Orbax abandons the other reads of the same checkpoint, whose
    failures asyncio would otherwise print at exit, once per array."""

    def __init__(self):
        super().__init__()
        self.directories: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Future exception was never retrieved"):
            return True
        text = str(record.exc_info[1]) if record.exc_info else str(getattr(record, "context", ""))
        text += " " + str(record.args)
        return not any(d in text for d in self.directories)


_orphaned_read_errors = _OrphanedReadErrors()
logging.getLogger("asyncio").addFilter(_orphaned_read_errors)


class Checkpointer:
    """Saves and restores `TrainState`s under `directory/<step>/`.

    Args:
        directory: usually `<workdir>/checkpoints`.
        keep: how many of the newest checkpoints to keep.
        async_save: write in a background thread while training goes on.

    In a multi-process run every process calls `save` and `restore` (Orbax coordinates them;
    the primary process writes).
    """

    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        import orbax.checkpoint as ocp

        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                create=True,
                cleanup_tmp_directories=True,
            ),
        )

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state: TrainState, force: bool = True) -> None:
        ocp = self._ocp
        tree = state_to_tree(state)
        step = _step_of(tree)
        if step in self.manager.all_steps():
            return
        meta = {"step": step, "sha256": params_digest(tree)}
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
            force=force,
        )

    def restore_latest(self, template: TrainState) -> TrainState | None:
        """The newest checkpoint that restores and verifies, or None if there is none.

        Checkpoints that fail (missing files, truncated or flipped bytes, a different structure)
        are reported on stderr and skipped.
        """
        ocp = self._ocp
        like = state_to_tree(template)
        for step in reversed(self.all_steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(like), meta=ocp.args.JsonRestore()),
                )
                tree, meta = restored["state"], restored["meta"]
                digest = params_digest(tree)
                if meta is None or meta.get("sha256") != digest:
                    raise ValueError(f"content sha256 {digest[:12]}... does not match the recorded "
                                     f"{str((meta or {}).get('sha256'))[:12]}...")
                if _step_of(tree) != step:
                    raise ValueError(f"holds step {_step_of(tree)}")
                return tree_to_state(tree, template)
            except Exception as e:  # noqa: BLE001 - any failure means: use an older checkpoint
                msg = (f"checkpoint {self.directory / str(step)} is unreadable or corrupted "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}); "
                       "falling back to the previous one")
                log.warning(msg)
                print(f"WARNING: {msg}", file=sys.stderr, flush=True)
                _orphaned_read_errors.directories.add(str(self.directory / str(step)))
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
