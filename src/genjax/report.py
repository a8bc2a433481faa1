"""Run outputs: crash-safe files, metrics logs, and reports rendered to Markdown and HTML.

Everything an experiment writes goes through here, so that every file in a run directory is
either complete or absent: files are written to a temporary name in the same directory, flushed,
fsync'ed and renamed over the target (`os.replace` is atomic on POSIX and Windows). A run killed
at any moment leaves the previous version of each file intact.

A `Report` collects headings, paragraphs, tables and figures once and renders them both to
`report.md` (figures as PNG files beside it) and to an HTML fragment that the experiment tour
stitches into one self-contained page.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "DamagedFileError",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "to_jsonable",
    "MetricsLog",
    "Report",
    "format_number",
    "image_grid",
    "html_page",
    "read_jsonl",
    "TensorBoardWriter",
    "MetricsSinks",
    "NullSink",
    "crc32c",
]


# ----------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically: readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Converts numpy/JAX scalars and arrays, dataclasses, tuples and paths to JSON values.

    Non-finite floats become the strings "nan", "inf" and "-inf" so that the files stay valid JSON
    (strict parsers reject bare NaN).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / jax arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    raise TypeError(f"cannot write a value of type {type(value).__name__} to JSON: {value!r}")


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


class DamagedFileError(ValueError):
    """A file genjax wrote (atomically) cannot be read back: it was truncated, damaged or written
    by something else. The message names the file and says how to recover."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(
            f"{path} is damaged or not a file genjax wrote ({reason}); delete it and run the "
            "same command again to recreate it"
        )
        self.path = Path(path)
        self.reason = reason


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file; DamagedFileError if it is not valid JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DamagedFileError(path, f"{type(err).__name__}: {err}") from None


# ----------------------------------------------------------------------------- metrics log


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`.

    Each record is written with a single `write` of a complete line and flushed, so a kill leaves
    at most one partial last line; `read` skips such a line. On resume, `truncate_after(step)`
    drops records of steps that the restored checkpoint has not reached, so the log never holds
    the same step twice.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(to_jsonable(record), sort_keys=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)

    def truncate_after(self, step: int) -> None:
        """Keeps only the records whose "step" is <= `step` (and those without a step)."""
        if not self.path.exists():
            return
        kept = [r for r in self.read() if not isinstance(r.get("step"), int) or r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records


# ----------------------------------------------------------------------------- images


def image_grid(images: Any, *, cols: int, rows: int | None = None, pad: int = 0, fill: float = 1.0):
    """Tiles images into one image, row by row, `cols` to a row, for `imshow`.

    Image i goes to row i // cols, column i % cols. Cells are `pad` pixels apart and `pad`
    pixels from the border; the gaps, the border and the cells without an image are `fill`.

    Args:
        images: [N, H, W], or [N, H, W, C] (C = 1: grey, tiled as [N, H, W]; C = 3 or 4: colour).
        cols: images per row (a positive int).
        rows: rows of the grid; by default as many as the N images need, ceil(N / cols). Images
            beyond rows * cols are left out.
        pad: pixels between cells and around the grid (a non-negative int).
        fill: the value of the gaps and of the empty cells (1.0: white in [0, 1] grey scale).

    Returns:
        A float32 NumPy array [rows * (H + pad) + pad, cols * (W + pad) + pad] (and [..., C] for
        colour images).

    Examples:
        >>> import numpy as np
        >>> image_grid(np.zeros((3, 2, 2, 1)), cols=2).shape
        (4, 4)
        >>> image_grid(np.zeros((3, 2, 2)), cols=2, pad=1, fill=0.5)[0]
        array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], dtype=float32)
    """
    import numpy as np

    from genjax import _checks

    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4):
        raise ValueError(f"`images` must be [N, H, W] or [N, H, W, C], got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise TypeError(f"`images` must be real numbers, got dtype {x.dtype}")
    cols = _checks.positive_int(cols, "cols")
    pad = _checks.integer(pad, "pad", low=0)
    fill = _checks.number(fill, "fill")
    if rows is None:
        if len(x) == 0:
            raise ValueError("`images` is empty: pass `rows` for an empty grid")
        rows = -(-len(x) // cols)
    rows = _checks.positive_int(rows, "rows")
    h, w = x.shape[1:3]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *x.shape[3:]), fill, np.float32)
    for i, img in enumerate(x[: rows * cols]):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = img
    return grid


# ----------------------------------------------------------------------------- reports


def format_number(x: Any, digits: int = 4) -> str:
    """Formats a table cell: ints as ints, floats with `digits` significant digits."""
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if hasattr(x, "item"):
        x = x.item()
        if isinstance(x, int):
            return format_number(x, digits)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        if x == 0:
            return "0"
        if 1e-3 <= abs(x) < 1e5:
            return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{max(digits - 1 - int(math.log10(abs(x))), 0)}f}"
        return f"{x:.{digits - 1}e}"
    return str(x)


@dataclasses.dataclass
class _Block:
    kind: str  # "heading" | "text" | "table" | "figure"
    payload: dict[str, Any]


class Report:
    """A report built once and rendered to Markdown (`report.md`) and to an HTML fragment.

    Figures are saved as PNG into `directory` when added, so a crash after a figure was added
    still leaves the figure on disk. A report with `enabled=False` (on the processes other than
    process 0 of a multi-host run) collects nothing and writes nothing.

    Example:
        report = Report("Information theory", directory=workdir)
        report.table(["code", "bits"], [["fixed", 3.0]], caption="Average code length")
        report.figure(fig, "kl_vs_js", caption="KL and JS integrands")
        report.save()  # writes workdir/report.md
    """

    def __init__(self, title: str, directory: str | os.PathLike, enabled: bool = True):
        self.title = title
        self.directory = Path(directory)
        self.enabled = enabled
        self.blocks: list[_Block] = []

    # building ------------------------------------------------------------------------------
    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(_Block("heading", {"text": text, "level": level}))

    def text(self, text: str) -> None:
        self.blocks.append(_Block("text", {"text": text}))

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        caption: str | None = None,
        digits: int = 4,
    ) -> None:
        rows = [[format_number(c, digits) for c in row] for row in rows]
        for r in rows:
            if len(r) != len(headers):
                raise ValueError(f"table row has {len(r)} cells but there are {len(headers)} headers: {r}")
        self.blocks.append(_Block("table", {"headers": list(headers), "rows": rows, "caption": caption}))

    def figure(self, fig: Any, name: str, caption: str | None = None, dpi: int = 110) -> Path:
        """Saves a matplotlib figure as `<directory>/<name>.png`, closes it, and adds it."""
        import io

        import matplotlib.pyplot as plt

        if not self.enabled:
            plt.close(fig)
            return self.directory / f"{name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        path = atomic_write_bytes(self.directory / f"{name}.png", buf.getvalue())
        self.blocks.append(_Block("figure", {"file": path.name, "caption": caption or ""}))
        return path

    # rendering -----------------------------------------------------------------------------
    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            p = b.payload
            if b.kind == "heading":
                out += ["#" * p["level"] + " " + p["text"], ""]
            elif b.kind == "text":
                out += [p["text"], ""]
            elif b.kind == "table":
                if p["caption"]:
                    out += [f"**{p['caption']}**", ""]
                out.append("| " + " | ".join(p["headers"]) + " |")
                out.append("|" + "|".join(" --- " for _ in p["headers"]) + "|")
                out += ["| " + " | ".join(r) + " |" for r in p["rows"]]
                out.append("")
            elif b.kind == "figure":
                out += [f"![{p['caption']}]({p['file']})", ""]
                if p["caption"]:
                    out += [f"*{p['caption']}*", ""]
        return "\n".join(out)

    def to_html(self, embed_images: bool = True, heading_offset: int = 0) -> str:
        """An HTML fragment; images embedded as base64 so that the page stands alone."""
        out = [f"<h{1 + heading_offset}>{html.escape(self.title)}</h{1 + heading_offset}>"]
        for b in self.blocks:
            p = b.payload
            if b.kind == "heading":
                lvl = min(p["level"] + heading_offset, 6)
                out.append(f"<h{lvl}>{html.escape(p['text'])}</h{lvl}>")
            elif b.kind == "text":
                out.append(f"<p>{_inline_markdown_to_html(p['text'])}</p>")
            elif b.kind == "table":
                cap = f"<caption>{html.escape(p['caption'])}</caption>" if p["caption"] else ""
                head = "".join(f"<th>{html.escape(h)}</th>" for h in p["headers"])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in p["rows"]
                )
                out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b.kind == "figure":
                if embed_images:
                    data = base64.b64encode((self.directory / p["file"]).read_bytes()).decode()
                    src = f"data:image/png;base64,{data}"
                else:
                    src = html.escape(p["file"])
                cap = html.escape(p["caption"])
                out.append(f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
        return "\n".join(out)

    def save(self) -> Path:
        """Writes `report.md` and `report.json` (the blocks, from which `load` rebuilds it)."""
        if not self.enabled:
            return self.directory / "report.md"
        blocks = [{"kind": b.kind, **b.payload} for b in self.blocks]
        write_json(self.directory / "report.json", {"title": self.title, "blocks": blocks})
        return atomic_write_text(self.directory / "report.md", self.to_markdown())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Report":
        """Rebuilds a saved report from `<directory>/report.json`."""
        data = read_json(Path(directory) / "report.json")
        report = cls(data["title"], directory)
        for b in data["blocks"]:
            kind = b.pop("kind")
            report.blocks.append(_Block(kind, b))
        return report


def _inline_markdown_to_html(text: str) -> str:
    """Escapes text and renders `code` spans; enough for report paragraphs."""
    parts = text.split("`")
    return "".join(
        f"<code>{html.escape(s)}</code>" if i % 2 else html.escape(s).replace("\n", "<br>")
        for i, s in enumerate(parts)
    )


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { font-weight: 600; text-align: left; padding-bottom: 0.3em; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f3f3f3; padding: 0 0.2em; }
.failed { color: #b00; font-weight: 600; }
nav li { margin: 0.15em 0; }
"""


def html_page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


# ----------------------------------------------------------------------------- TensorBoard


def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of `data` (RFC 3720 B.4: crc32c(b"123456789") == 0xE3069283)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None,
           scalars: dict[str, float] | None = None) -> bytes:
    import struct

    msg = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        msg += _len_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _len_field(1, _len_field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        msg += _len_field(5, values)
    return msg


class TensorBoardWriter:
    """Writes scalar summaries to a TensorBoard event file, without TensorFlow.

    The file is the TFRecord framing (length, masked CRC-32C of the length, the `Event` protocol
    buffer, masked CRC-32C of the data) of `tensorflow/core/util/event.proto`; TensorBoard reads it
    as it reads TensorFlow's. Each `write` appends whole records and flushes. A resumed run opens
    a new event file; TensorBoard merges the files of a directory.

    Written by hand rather than with a library: the writers either need TensorFlow
    (`tf.summary`, `flax.metrics.tensorboard`, clu) or bring protobuf and, for the `tensorboard`
    package, its server's dependencies (grpcio, werkzeug, markdown) into the runtime, for the
    ~60 lines a scalar event takes; the tests read the files back with `tensorboard`'s own reader
    (a test extra). Listed with the backend-specific code in `genjax._backend`.
    """

    def __init__(self, logdir: str | os.PathLike):
        import socket
        import time

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.genjax"
        self.path = self.logdir / name
        self._append(_event(time.time(), 0, file_version="brain.Event:2"))

    def _append(self, event: bytes) -> None:
        import struct

        header = struct.pack("<Q", len(event))
        record = header + struct.pack("<I", _masked_crc(header)) + event + struct.pack("<I", _masked_crc(event))
        with open(self.path, "ab") as f:
            f.write(record)
            f.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        import time

        finite = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if finite:
            self._append(_event(time.time(), int(step), scalars=finite))

    def write(self, record: dict[str, Any]) -> None:
        """Writes the numeric entries of a metrics record with a "step" (the MetricsLog interface)."""
        if isinstance(record.get("step"), int):
            self.scalars(record["step"], {k: v for k, v in record.items() if k != "step"})

    def truncate_after(self, step: int) -> None:  # event files are append-only; see the class doc
        pass


class NullSink:
    """A metrics sink that drops everything (processes other than 0 in a multi-host run)."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def read(self) -> list[dict[str, Any]]:
        return []


class MetricsSinks:
    """Fans one metrics record out to several sinks (e.g. `MetricsLog` and `TensorBoardWriter`)."""

    def __init__(self, *sinks: Any):
        self.sinks = sinks

    def write(self, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.write(record)

    def truncate_after(self, step: int) -> None:
        for s in self.sinks:
            s.truncate_after(step)
