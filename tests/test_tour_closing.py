"""The tour's closing comparison: every image generator's FID against its CPU seconds."""

from __future__ import annotations

import numpy as np

from experiments import _tour
from experiments._features import generator_record
from genjax import report


def _results(tmp_path):
    (tmp_path / "gan_mnist").mkdir()
    (tmp_path / "ddpm_mnist").mkdir()
    np.save(tmp_path / "gan_mnist" / "samples_gan.npy", np.zeros((40, 28, 28, 1), np.float32))
    gan = generator_record("DCGAN gan", fid=40.0, kid=0.5, train_seconds=90.0, seconds_per_1000=0.2, real_fid=5.0,
                           num_samples=1000, samples="samples_gan.npy",
                           scores={"precision": 0.625, "recall": 0.375, "density": 0.5, "coverage": 0.25, "fid": 40.0})
    ddpm = generator_record("pixel DDPM (DPM++ 20)", fid=20.0, kid=0.1, train_seconds=200.0, seconds_per_1000=10.0,
                            real_fid=5.0, num_samples=1000, samples="missing.npy")
    return [
        {"name": "info_theory", "ok": True, "seconds": 1.0, "summary": {}},
        {"name": "gan_mnist", "ok": True, "seconds": 100.0, "summary": {"generators": [gan]}},
        {"name": "vae", "ok": False, "seconds": 1.0, "error": "boom", "traceback": ""},
        {"name": "ddpm_mnist", "ok": True, "seconds": 220.0, "summary": {"generators": [ddpm]}},
    ]


def test_records_come_from_the_successful_experiments_in_tour_order(tmp_path):
    records = _tour.generator_records(_results(tmp_path))
    assert [(r["experiment"], r["label"]) for r in records] == [("gan_mnist", "DCGAN gan"),
                                                                ("ddpm_mnist", "pixel DDPM (DPM++ 20)")]


def test_closing_report_has_the_figure_the_samples_and_a_table_sorted_by_fid(tmp_path):
    rep = _tour.closing_comparison(tmp_path, _results(tmp_path))
    assert (tmp_path / "closing" / "fid_vs_seconds.png").is_file()
    assert (tmp_path / "closing" / "samples.png").is_file()  # only the generator whose samples exist
    md = (tmp_path / "closing" / "report.md").read_text()
    assert md.index("pixel DDPM (DPM++ 20)") < md.index("DCGAN gan")  # FID 20 before FID 40
    # x floor = FID / floor; total = training + sampling seconds
    assert "| 20.00 | 4.000 |" in md and "| 40.00 | 8.000 |" in md
    assert "| 210.0 |" in md and "| 90.20 |" in md
    assert "| 0.625 | 0.375 |" in md  # the GAN's precision and recall; the DDPM's record has none: "-"
    assert saved_has_prdc(tmp_path)
    saved = report.read_json(tmp_path / "closing" / "generators.json")["generators"]
    assert len(saved) == 2 and rep is not None


def saved_has_prdc(tmp_path):
    saved = {g["label"]: g for g in report.read_json(tmp_path / "closing" / "generators.json")["generators"]}
    return saved["DCGAN gan"]["coverage"] == 0.25 and "precision" not in saved["pixel DDPM (DPM++ 20)"]


def test_no_generators_no_closing_section(tmp_path):
    results = [{"name": "info_theory", "ok": True, "seconds": 1.0, "summary": {}}]
    assert _tour.closing_comparison(tmp_path, results) is None
    assert not (tmp_path / "closing").exists()


def test_labels_of_close_points_are_moved_apart():
    """Two generators at nearly the same (seconds, FID) — the tour's DCGAN and latent diffusion
    were — get label boxes that do not overlap; a lone label stays where it was."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, 1000)
    ax.set_ylim(1, 1000)
    points = [(50.0, 42.0), (52.0, 42.5), (5.0, 500.0)]
    labels = [ax.annotate(f"generator {i}", p, textcoords="offset points", xytext=(5, 4), fontsize=8)
              for i, p in enumerate(points)]
    _tour.separate_labels(fig, labels)
    renderer = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in labels]
    assert not boxes[0].overlaps(boxes[1])
    assert labels[0].get_position() == (5, 4) and labels[2].get_position() == (5, 4)
    assert labels[1].get_position()[1] < 4
    plt.close(fig)


def test_a_record_with_a_curve_keeps_it(tmp_path):
    """A generator's FID-vs-seconds curve (diffusion during training) is saved with its record
    and the closing figure still draws."""
    curve = [{"step": 300, "seconds": 30.0, "fid": 60.0}, {"step": 600, "seconds": 60.0, "fid": 30.0}]
    g = generator_record("pixel DDPM (DDIM 20)", fid=30.0, kid=0.1, train_seconds=50.0, seconds_per_1000=10.0,
                         real_fid=5.0, num_samples=1000, curve=curve)
    assert g["curve"] == curve and "curve" not in generator_record(
        "x", fid=1.0, kid=0.0, train_seconds=1.0, seconds_per_1000=1.0, real_fid=1.0, num_samples=2)
    results = [{"name": "ddpm_mnist", "ok": True, "seconds": 60.0, "summary": {"generators": [g]}}]
    assert _tour.closing_comparison(tmp_path, results) is not None
    saved = report.read_json(tmp_path / "closing" / "generators.json")["generators"]
    assert saved[0]["curve"] == curve
