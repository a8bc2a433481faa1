"""genjax.report (crash-safe outputs, reports, TensorBoard) and the package's import cost."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from genjax import report


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    report.write_json(path, {"a": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        report.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind


def test_to_jsonable_handles_numpy_nonfinite_and_dataclasses():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class C:
        x: float = 1.5
        t: tuple = (1, 2)

    out = report.to_jsonable({"n": np.float32(0.25), "arr": np.arange(3), "nan": math.nan, "inf": -math.inf, "c": C()})
    assert out == {"n": 0.25, "arr": [0, 1, 2], "nan": "nan", "inf": "-inf", "c": {"x": 1.5, "t": [1, 2]}}
    json.dumps(out, allow_nan=False)  # strictly valid JSON
    with pytest.raises(TypeError, match="cannot write a value of type object"):
        report.to_jsonable(object())


def test_metrics_log_skips_a_partial_last_line_and_truncates_on_resume(tmp_path):
    log = report.MetricsLog(tmp_path / "metrics.jsonl")
    for s in (10, 20, 30):
        log.write({"step": s, "loss": 1.0 / s})
    with open(log.path, "a") as f:
        f.write('{"step": 40, "lo')  # a kill in the middle of a write
    assert [r["step"] for r in log.read()] == [10, 20, 30]
    log.truncate_after(20)
    assert [r["step"] for r in log.read()] == [10, 20]


def test_report_renders_markdown_and_html_and_round_trips(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = report.Report("Title", tmp_path)
    rep.heading("Section")
    rep.text("uses `code`")
    rep.table(["name", "value"], [["a", 0.123456], ["b", 12345678]], caption="numbers")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    rep.figure(fig, "line", caption="a line")
    rep.save()
    md = (tmp_path / "report.md").read_text()
    assert "| a | 0.1235 |" in md and "| b | 12,345,678 |" in md and "![a line](line.png)" in md
    html = report.Report.load(tmp_path).to_html()
    assert "<code>code</code>" in html and "data:image/png;base64," in html and "<caption>numbers</caption>" in html
    with pytest.raises(ValueError, match="row has 1 cells but there are 2 headers"):
        rep.table(["x", "y"], [[1]])


def test_crc32c_known_answer():
    # RFC 3720, appendix B.4: the CRC-32C check value of the ASCII digits "123456789".
    assert report.crc32c(b"123456789") == 0xE3069283


def test_tensorboard_reads_our_event_files(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    w = report.TensorBoardWriter(tmp_path)
    w.write({"step": 5, "loss": 0.5, "accuracy": 0.75, "note": "ignored"})
    w.write({"step": 10, "loss": 0.25})
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["accuracy", "loss"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(5, 0.5), (10, 0.25)]


HEAVY = ("flax", "optax", "orbax", "tensorflow_datasets", "matplotlib", "tensorflow", "torch")


@pytest.mark.parametrize("statement", ["import genjax", "import genjax.divergences"])
def test_importing_genjax_and_its_math_does_not_import_heavy_libraries(statement):
    code = f"import sys; {statement}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.replace("'", '"')))
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    if statement == "import genjax":
        assert "jax" not in loaded  # the package itself imports nothing until a submodule is used
