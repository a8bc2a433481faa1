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
