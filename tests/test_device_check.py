"""benchmarks/device_check.sh and its summariser (benchmarks/device_summary.py), on this host.

The script itself needs a GPU or TPU; here it is checked for syntax (`bash -n`) and for stopping,
before it installs anything, where there is none. The summariser is checked on a recorded run:
tests/data/bench_quick_cpu.json, written on the 2-core CPU VM by `python -m benchmarks --quick --only
ONLY --json ...` with ONLY = `RECORDED_ONLY` below (its numbers are that run's, not a reference for
speed).
"""

from __future__ import annotations

import copy
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import device_summary

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.sh"
RECORDED = Path(__file__).resolve().parent / "data" / "bench_quick_cpu.json"
RECORDED_ONLY = ("train_step/vae_mlp,train_step/dcgan/fused,scaling/one_seed/vae_mlp,scaling/vmap_seeds/vae_mlp/r4,"
                 "scaling/pmap/vae_mlp")


def test_the_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _has_accelerator() -> bool:
    gpu = shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    return bool(gpu or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


@pytest.mark.skipif(_has_accelerator(), reason="this host has an accelerator: the script would install and run")
def test_without_an_accelerator_the_script_stops_before_installing_anything(tmp_path):
    env = {**os.environ, "VENV": str(tmp_path / "venv"), "OUT_DIR": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "no NVIDIA GPU (nvidia-smi) and no TPU" in proc.stderr
    assert not (tmp_path / "venv").exists()


TRAIN, SEEDS, DEVICES = "Train steps", "Seeds as replicas (one program)", "Over the local devices"


@pytest.mark.skipif(_has_accelerator(), reason="this host has an accelerator: JAX would find it")
def test_with_a_gpu_listed_but_jax_on_the_cpu_the_script_stops_at_the_device_check(tmp_path):
    """A stand-in `nvidia-smi` that lists a GPU, and `PYTHON` (this interpreter, no install):
    the script must not install anything and must stop where JAX reports the CPU."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'GPU 0: a stand-in'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "VENV": str(tmp_path / "venv"), "OUT_DIR": str(tmp_path / "out"), "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "GPU 0: a stand-in" in proc.stdout and "== devices" in proc.stdout
    assert "JAX runs on cpu, not an accelerator" in proc.stderr
    assert "== tests" not in proc.stdout and not (tmp_path / "venv").exists()


@pytest.fixture(scope="module")
def doc():
    with open(RECORDED) as f:
        return json.load(f)


def _row(text: str, section: str, first_cells: str) -> list[str]:
    """The cells of the one row of `## section` that starts with `first_cells`."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in body.splitlines() if line.startswith(f"| {first_cells} |")]
    assert len(rows) == 1, (first_cells, text)
    return [c.strip() for c in rows[0]]


def test_the_summary_has_one_row_per_fused_train_step_with_its_ratio_to_dispatch(doc):
    assert doc["config"]["quick"] and doc["config"]["only"] == RECORDED_ONLY  # the run documented above
    text = device_summary.summarise(doc)
    results = {r["name"]: r for r in doc["results"]}
    fused = [n for n in results if n.startswith("train_step/") and "/fused" in n]
    assert len(fused) == 3  # vae_mlp, vae_mlp bf16, dcgan
    assert doc["device"] in text.splitlines()[0]
    row = _row(text, TRAIN, "vae_mlp")
    f, d = results["train_step/vae_mlp/fused"], results["train_step/vae_mlp/dispatch"]
    assert float(row[1]) == pytest.approx(f["steps_per_s"], rel=1e-3)
    assert float(row[3]) == pytest.approx(f["steps_per_s"] / d["steps_per_s"], rel=1e-2)
    assert float(row[4]) == pytest.approx(100 * f["peak_fraction"], rel=1e-2)
    assert _row(text, TRAIN, "dcgan")[2] == "-"  # no dispatch row recorded for it
    assert _row(text, TRAIN, "vae_mlp (bf16)")[1] != "-"


def test_the_summary_takes_the_paired_seed_ratio_and_the_device_scaling(doc):
    text = device_summary.summarise(doc)
    results = {r["name"]: r for r in doc["results"]}
    vmap = _row(text, SEEDS, "vae_mlp | vmap")
    assert vmap[2] == "4"
    assert float(vmap[4]) == pytest.approx(results["scaling/vmap_seeds/vae_mlp/r4"]["extra"]["vs_baseline"], rel=1e-2)
    d2 = _row(text, DEVICES, "vae_mlp | pmap | 2")
    one, two = results["scaling/pmap/vae_mlp/d1"], results["scaling/pmap/vae_mlp/d2"]
    assert float(d2[4]) == pytest.approx(two["steps_per_s"] / one["steps_per_s"], rel=1e-2)


def test_skips_and_failures_are_reported_and_a_failure_is_a_non_zero_exit(doc, tmp_path, capsys):
    broken = copy.deepcopy(doc)
    broken["results"] = [r for r in broken["results"] if r["name"] != "scaling/pmap/vae_mlp/d2"]
    broken["skipped"] = [{"name": "scaling/pmap/vae_mlp/d2", "reason": "2 devices requested, 1 present"}]
    broken["failures"] = [{"name": "train_step/dcgan/dispatch", "error": "RuntimeError: out of memory"}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(broken))
    assert device_summary.main([str(path)]) == 1
    text = capsys.readouterr().out
    assert "- skipped `scaling/pmap/vae_mlp/d2`: 2 devices requested, 1 present" in text
    assert "- `train_step/dcgan/dispatch`: RuntimeError: out of memory" in text
    assert device_summary.main([str(RECORDED)]) == 0
