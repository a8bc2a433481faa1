"""The experiment framework, the experiments' numbers, resume of a real experiment, the tour."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import REGISTRY, load
from experiments._framework import ConfigError, run_experiment
from genjax import report

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=timeout)


# ---------------------------------------------------------------------------- the command line


def test_listing_names_every_registered_experiment():
    out = run_cli()
    assert out.returncode == 0
    for name in REGISTRY:
        assert name in out.stdout
    assert "tour" in out.stdout


def test_unknown_experiment_lists_the_known_ones():
    out = run_cli("no_such_experiment")
    assert out.returncode == 2
    assert "unknown experiment 'no_such_experiment'" in out.stderr
    assert "info_theory" in out.stderr and "mnist_classifier" in out.stderr


def test_unknown_config_field_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) --no-such-field .* valid options: .*--fit-steps"):
        load("info_theory").parse_args(["--no-such-field", "3"])
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['bogus'\].*valid fields"):
        load("info_theory").make_config(bogus=1)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--fit-steps", "many"], "--fit-steps: expected an integer, got 'many'"),
        (["--learning-rate", "fast"], "--learning-rate: expected float, got 'fast'"),
        (["--seed", "1.5"], "--seed: expected an integer, got '1.5'"),
    ],
)
def test_ill_typed_values_say_what_was_expected(argv, message):
    with pytest.raises(ConfigError, match=message):
        load("info_theory").parse_args(argv)


def test_literal_fields_list_their_choices():
    with pytest.raises(ConfigError, match=r"--data-source: expected one of \['auto', 'tfds', 'embedded'\]"):
        load("mnist_classifier").parse_args(["--data-source", "internet"])


def test_overrides_are_typed_and_quick_is_the_documented_small_config():
    exp = load("mnist_classifier")
    config, workdir, preset, _ = exp.parse_args(["--quick", "--steps", "1e3", "--data-dir", "none", "--workdir", "w"])
    assert preset == "quick" and config.steps == 1000 and config.data_dir is None and str(workdir) == "w"
    assert config.batch_size == exp.quick["batch_size"]  # the rest of the quick config applies
    assert exp.parse_args(["--preset", "quick", "--steps", "1e3", "--data-dir", "none"])[0] == config


def _toy_experiment(**presets):
    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = 0
        steps: int = 100
        width: int = 8

    from experiments._framework import Experiment

    return Experiment(name="toy", title="toy", description="", config=Config, run=lambda ctx: {},
                      quick={"steps": 10}, presets=presets)


def test_presets_are_named_override_sets():
    exp = _toy_experiment(standard={"steps": 50, "width": 16})
    assert exp.preset_names == ("default", "quick", "standard")
    assert exp.make_config().steps == 100
    assert exp.make_config(preset="quick") == exp.make_config(quick=True) == dataclasses.replace(exp.make_config(), steps=10)
    standard = exp.make_config(preset="standard", width=4)  # explicit overrides win over the preset
    assert (standard.steps, standard.width) == (50, 4)
    config, _, preset, _ = exp.parse_args(["--preset", "standard"])
    assert preset == "standard" and (config.steps, config.width) == (50, 16)
    # a CPU-sized preset an experiment lacks falls back to its quick one (the tour, prerequisites)
    assert _toy_experiment().nearest_preset("standard") == "quick"
    assert exp.nearest_preset("standard") == "standard" and exp.nearest_preset("default") == "default"


def test_bad_presets_are_refused_with_the_names_that_exist():
    exp = _toy_experiment(standard={"steps": 50})
    with pytest.raises(ConfigError, match=r"no preset 'huge'; available: default, quick, standard"):
        exp.make_config(preset="huge")
    with pytest.raises(ConfigError, match=r"--quick is --preset quick; it cannot be combined with --preset standard"):
        exp.parse_args(["--quick", "--preset", "standard"])
    with pytest.raises(TypeError, match=r"preset: expected a preset name \(str\) or None, got int"):
        exp.make_config(preset=1)
    with pytest.raises(TypeError, match=r"standard overrides \['depth'\] are not config fields"):
        _toy_experiment(standard={"depth": 3})
    with pytest.raises(TypeError, match=r"'default' and 'quick' are not names for `presets`"):
        _toy_experiment(quick={"steps": 1})


def test_cli_error_exits_2_with_the_message():
    out = subprocess.run([sys.executable, "-m", "experiments.info_theory", "--fit-steps", "x"],
                         capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert out.returncode == 2 and "expected an integer" in out.stderr


def test_reusing_a_workdir_with_another_config_is_refused(tmp_path):
    exp = load("info_theory")
    run_experiment(exp, exp.make_config(quick=True), tmp_path, quick=True)
    with pytest.raises(ConfigError, match=r"different config \(mixture_std: 0.6 -> 0.7\)"):
        run_experiment(exp, exp.make_config(quick=True, mixture_std=0.7), tmp_path, quick=True)


def test_evaluation_fields_may_change_on_resume_and_nothing_else():
    from experiments._framework import check_config_compatible

    old = {"experiment": "x", "config": {"steps": 10, "num_samples": 500, "width": 8}}
    fields = frozenset({"num_samples"})
    check_config_compatible("x", old, {"experiment": "x", "config": {"steps": 20, "num_samples": 64, "width": 8}},
                            fields)
    with pytest.raises(ConfigError, match=r"num_samples: 500 -> 64"):
        check_config_compatible("x", old, {"experiment": "x", "config": {"steps": 10, "num_samples": 64, "width": 8}})
    with pytest.raises(ConfigError, match=r"different config \(width: 8 -> 9\)"):
        check_config_compatible("x", old, {"experiment": "x", "config": {"steps": 10, "num_samples": 64, "width": 9}},
                                fields)
    # the sampling-only fields of the diffusion experiments are declared as such
    for name, field in (("ddpm_mnist", "num_samples"), ("latent_diffusion", "nfe"),
                        ("diffusion_2d", "num_samples")):
        assert field in load(name).evaluation_fields
    with pytest.raises(TypeError, match=r"evaluation_fields \['nope'\] are not config fields"):
        dataclasses.replace(load("info_theory"), evaluation_fields=frozenset({"nope"}))


# ---------------------------------------------------------------------------- info_theory


def test_info_theory_reproduces_the_chapters_numbers(tmp_path):
    exp = load("info_theory")
    summary = run_experiment(exp, exp.make_config(quick=True), tmp_path, quick=True)
    c = "coding/{}/{}".format
    # The course's weather-coding table (bits), quoted to the digits it gives.
    assert summary[c("2 equiprobable states", "entropy_bits")] == pytest.approx(1.0, abs=1e-6)
    assert summary[c("8 equiprobable states", "entropy_bits")] == pytest.approx(3.0, abs=1e-6)
    assert summary[c("sunny 75% / rainy 25%", "entropy_bits")] == pytest.approx(0.811, abs=5e-4)
    assert summary[c("8 states, fixed 3-bit code", "entropy_bits")] == pytest.approx(2.23, abs=5e-3)
    assert summary[c("8 states, fixed 3-bit code", "length_bits")] == pytest.approx(3.0, abs=1e-6)
    assert summary[c("8 states, code 2,2,3,3,4,4,5,5", "length_bits")] == pytest.approx(2.42, abs=5e-3)
    assert summary[c("rainy region: reversed p, same code", "length_bits")] == pytest.approx(4.58, abs=5e-3)
    for name in ("8 states, code 2,2,3,3,4,4,5,5", "rainy region: reversed p, same code"):
        assert summary[c(name, "kl_bits")] == pytest.approx(
            summary[c(name, "length_bits")] - summary[c(name, "entropy_bits")], abs=1e-5)
    # KL(N(0,1)||N(1,1)) = (mu_p - mu_q)^2 / 2 = 0.5 nats (closed form); JS = 0.11142 nats
    # (scipy.integrate.quad of the JS integrand, computed when writing this test).
    assert summary["kl_pq_nats"] == pytest.approx(0.5, abs=1e-4)
    assert summary["kl_qp_nats"] == pytest.approx(0.5, abs=1e-4)
    assert summary["kl_pq_closed_form_nats"] == pytest.approx(0.5, abs=1e-6)
    assert summary["js_nats"] == pytest.approx(0.11142, abs=1e-4)
    # Forward KL over Gaussians is minimised by moment matching (mean 0, variance 2^2 + 0.6^2);
    # reverse KL locks onto one mode (mean +-2, std about 0.6).
    assert summary["fit/forward/mu"] == pytest.approx(0.0, abs=0.05)
    assert summary["fit/forward/sigma"] == pytest.approx((4 + 0.36) ** 0.5, rel=0.03)
    assert abs(summary["fit/reverse/mu"]) == pytest.approx(2.0, abs=0.1)
    assert summary["fit/reverse/sigma"] == pytest.approx(0.6, rel=0.1)
    for f in ("config.json", "summary.json", "report.md", "report.json", "kl_vs_js.png", "bernoulli_kl.png",
              "forward_vs_reverse_kl.png"):
        assert (tmp_path / f).is_file(), f
    md = (tmp_path / "report.md").read_text()
    assert "| sunny 75% / rainy 25% | 0.8113 |" in md
    assert summary["preset"] == "quick" and report.read_json(tmp_path / "config.json")["preset"] == "quick"


# The real training runs of mnist_classifier (SIGKILL, Ctrl-C, a damaged checkpoint) are in
# tests/test_cli.py, which also holds the command line's error cases.


# ---------------------------------------------------------------------------- the tour


TOUR_SUBSET = ("info_theory", "mnist_classifier")  # each other experiment has its own smoke test


def test_quick_tour_writes_one_report(tmp_path):
    """The tour's mechanics on the two foundation experiments (the whole tour is the README's
    first command; every other experiment is smoke-tested in its own test file)."""
    out = run_cli("tour", "--quick", "--only", ",".join(TOUR_SUBSET), "--workdir", str(tmp_path), timeout=1200)
    assert out.returncode == 0, out.stderr[-5000:]
    html = (tmp_path / "report.html").read_text()
    index = (tmp_path / "index.md").read_text()
    for name in TOUR_SUBSET:
        assert f'<section id="{name}">' in html
        assert f"| {name} | quick | ok |" in index
        assert (tmp_path / name / "summary.json").is_file()
    assert html.count("data:image/png;base64,") >= 6
    assert "sunny 75% / rainy 25%" in html
    # The quick classifier reaches the target (>= 90% on the 1,000 held-out images).
    summary = report.read_json(tmp_path / "mnist_classifier" / "summary.json")
    assert summary["test_accuracy"] >= 0.90
    tour = json.loads((tmp_path / "summary.json").read_text())
    assert [e["name"] for e in tour["experiments"]] == list(TOUR_SUBSET)
    assert tour["preset"] == "quick" and [e["preset"] for e in tour["experiments"]] == ["quick", "quick"]


def test_every_registered_experiment_loads_and_has_a_quick_config():
    for name in REGISTRY:
        exp = load(name)
        assert exp.name == name
        config = exp.make_config(quick=True)
        assert config.seed == 0
        for preset in exp.presets:  # every named preset makes a valid config
            assert exp.make_config(preset=preset).seed == 0


def test_mnist_classifier_on_two_processes(tmp_path):
    """`--distributed` on two local processes (CPU collectives): one run, written by process 0."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["mnist_classifier", "--quick", "--steps", "40", "--batch-size", "16", "--checkpoint-every", "20",
            "--log-every", "10", "--eval-every", "40", "--data-source", "embedded", "--workdir", str(tmp_path),
            "--distributed", "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([sys.executable, "-m", "experiments", *args, "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summary = report.read_json(tmp_path / "summary.json")
    assert summary["process_count"] == 2 and summary["device_count"] == 2 and summary["steps"] == 40
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [20, 40]
    assert [r["step"] for r in report.read_jsonl(tmp_path / "metrics.jsonl")] == [10, 20, 30, 40]
    assert "held-out accuracy" in outs[0][1] and "held-out accuracy" not in outs[1][1]  # only process 0 logs
