"""Checkpoints with Orbax: `<workdir>/checkpoints/<step>/`, atomic, verified, last k kept.

Orbax writes each checkpoint into a temporary directory and renames it into place when it is
complete, so a kill during a save leaves only a temporary directory, which is ignored. On top of
that every checkpoint carries the sha256 of its own content; a restore recomputes it, and a
truncated or corrupted checkpoint is reported and skipped in favour of the previous one.

Once a save is complete, `genjax_manifest.json` in the checkpoint lists the size and sha256 of
each of its files, and a restore checks them before Orbax reads anything: a damaged file is
found without starting Orbax's asynchronous reads (whose abandoned siblings would otherwise print
"Event loop is closed" tracebacks when the failing restore closes its event loop). A checkpoint
found damaged is reported once and moved out of the way (renamed, then deleted), so that the
resumed run writes that step again, atomically, and later runs find a good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
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


def _quiet_closed_loop_callbacks() -> None:
    """Drops the "Event loop is closed" RuntimeErrors of tensorstore reads that a failed Orbax
    restore abandoned (they complete after its event loop closed and are reported through
    `sys.unraisablehook`, one traceback each); everything else goes to the previous hook.
    Installed only once a restore has failed, for the checkpoints whose files had no manifest."""
    previous = sys.unraisablehook
    if getattr(previous, "_genjax_quiet", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        tb = unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and tb is not None
                and tb.tb_frame.f_code.co_filename.endswith(os.path.join("asyncio", "base_events.py"))):
            return
        previous(unraisable)

    hook._genjax_quiet = True
    sys.unraisablehook = hook


MANIFEST = "genjax_manifest.json"
_DISCARDED = ".discarded-"  # prefix of a damaged checkpoint being deleted (not a step for Orbax)


def _file_digests(directory: Path) -> dict[str, list]:
    """`{relative path: [size, sha256]}` of every file under `directory` but the manifest."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[p.relative_to(directory).as_posix()] = [p.stat().st_size, h.hexdigest()]
    return out


def _check_manifest(directory: Path) -> bool:
    """False if `directory` has no manifest; True if every listed file matches it; else raises
    ValueError naming the first file that does not."""
    path = directory / MANIFEST
    if not path.is_file():
        return False
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"its {MANIFEST} is unreadable ({type(e).__name__})") from None
    for rel, (size, digest) in expected.items():
        p = directory / rel
        if not p.is_file():
            raise ValueError(f"file {rel} is missing")
        if p.stat().st_size != size:
            raise ValueError(f"file {rel} has {p.stat().st_size} bytes, {size} were written")
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise ValueError(f"file {rel} does not have the sha256 it was written with")
    return True


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
        self._unmanifested: list[int] = []  # saved steps whose manifest is still to be written
        self._is_primary = jax.process_index() == 0
        if self._is_primary and self.directory.is_dir():
            for leftover in self.directory.glob(_DISCARDED + "*"):  # a deletion cut short by a kill
                shutil.rmtree(leftover, ignore_errors=True)
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
        self._write_manifests()  # of the previous save (Orbax waits for it before a new one anyway)
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
            force=force,
        )
        self._unmanifested.append(step)

    def _write_manifests(self) -> None:
        """Waits for pending saves, then writes each finished checkpoint's manifest (atomically;
        a checkpoint without one is still restored, verified by its content sha256 alone)."""
        if not self._unmanifested:
            return
        self.manager.wait_until_finished()
        steps, self._unmanifested = self._unmanifested, []
        if not self._is_primary:
            return
        from genjax.report import write_json

        for step in steps:
            d = self.directory / str(step)
            if d.is_dir() and not (d / MANIFEST).exists():
                write_json(d / MANIFEST, {"step": step, "files": _file_digests(d)})

    def _discard(self, step: int) -> None:
        """Moves a damaged checkpoint out of Orbax's sight (one rename), then deletes it, so that
        the step is saved again when the resumed run reaches it."""
        if self._is_primary:
            d = self.directory / str(step)
            trash = self.directory / f"{_DISCARDED}{step}-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(d, trash)
            except OSError:
                pass  # already gone
            shutil.rmtree(trash, ignore_errors=True)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"genjax-discard-checkpoint-{step}")
        self.manager.reload()

    def restore_latest(self, template: TrainState) -> TrainState | None:
        """The newest checkpoint that restores and verifies, or None if there is none.

        Checkpoints that fail (missing files, truncated or flipped bytes, a different structure)
        are reported on stderr and skipped.
        """
        ocp = self._ocp
        like = state_to_tree(template)
        discard = []
        result = None
        for step in reversed(self.all_steps()):
            try:
                verified_files = _check_manifest(self.directory / str(step))
                if not verified_files:  # no manifest: Orbax may fail half-way through its reads
                    _quiet_closed_loop_callbacks()
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
                result = tree_to_state(tree, template)
                break
            except Exception as e:  # noqa: BLE001 - any failure means: use an older checkpoint
                msg = (f"checkpoint {self.directory / str(step)} is unreadable or corrupted "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}); "
                       "falling back to the previous one (this step will be saved again)")
                # one line on stderr: the logger's (Python's last-resort handler writes it there when
                # no logging is configured), printed as well only where the handlers write elsewhere
                log.warning(msg)
                if log.hasHandlers() and not any(getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
                                                 for h in _handlers(log)):
                    print(f"WARNING: {msg}", file=sys.stderr, flush=True)
                _orphaned_read_errors.directories.add(str(self.directory / str(step)))
                discard.append(step)
        for step in discard:
            self._discard(step)
        return result

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self._write_manifests()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self._write_manifests()
        self.manager.close()


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of `logger` reaches (following propagation)."""
    out = []
    while logger is not None:
        out += logger.handlers
        logger = logger.parent if logger.propagate else None
    return out
