"""Fuzz targets for the data layer: hypothesis strategies of hostile inputs and the code each one is fed to.

The property of every target: an input either loads or raises one of polymodal's own errors
(:class:`polymodal.errors.PolymodalError`), never anything else. ``tests/test_hostile_inputs.py`` checks it with a
few examples per target in the normal suite; ``benchmarks/fuzz_loaders.py`` with many.
"""

from __future__ import annotations

import io
import json
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from hypothesis import strategies as st
from PIL import Image

from polymodal.config import LimitsConfig, ProcessingConfig
from polymodal.data.loaders import InMemoryFile
from polymodal.data.processors import AudioProcessor, ImageProcessor, LoadContext, TabularProcessor, TextProcessor
from polymodal.data.readers import read_table
from polymodal.data.video import write_video
from polymodal.data.video_processing import VideoProcessor
from polymodal.schema import infer_problem_type, infer_schema

# Limits low enough that a mutated header declaring a big image/clip is refused quickly, not decoded for seconds:
# the property (loads or raises our error) holds for any limits.
LIMITS = LimitsConfig(
    max_image_pixels=1_000_000,
    max_audio_seconds=5.0,
    max_file_bytes=1_000_000,
    max_video_seconds=5.0,
    max_video_frames=200,
    max_video_pixels=1_000_000,
)


# ------------------------------------------------------------------------------------------ seed files
def _png(mode: str) -> bytes:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        im = Image.fromarray((rng.integers(0, 65535, (6, 5))).astype(np.uint16))
    elif mode == "RGBA":
        im = Image.fromarray(rng.integers(0, 255, (5, 6, 4), dtype=np.uint8), "RGBA")
    else:
        im = Image.fromarray(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _image(fmt: str, **kw: Any) -> bytes:
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (7, 9, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _wav(rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.random.default_rng(2).integers(0, 255, 200 * channels * width, dtype=np.uint8).tobytes())
    return buf.getvalue()


def _audio(fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(800) / 5).astype(np.float32), 8000, format=fmt)
    return buf.getvalue()


def _video(ext: str) -> bytes:
    path = Path(tempfile.mkdtemp(prefix="polymodal-fuzz-seed-")) / f"seed{ext}"
    frames = np.random.default_rng(3).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    return write_video(path, frames, 4, audio=np.zeros(2000, np.float32) if ext == ".mp4" else None).read_bytes()


IMAGE_SEEDS = [_png("RGB"), _png("L"), _png("P"), _png("RGBA"), _png("I;16"), _image("JPEG", quality=80)]
IMAGE_SEEDS += [_image("GIF"), _image("BMP"), _image("TIFF"), _image("WEBP")]
AUDIO_SEEDS = [_wav(), _wav(44100, 2, 2), _wav(8000, 1, 1), _audio("FLAC"), _audio("OGG")]
VIDEO_SEEDS = [_video(".mp4"), _video(".webm"), _video(".avi")]
_FRAME = pd.DataFrame(
    {"x": [1.5, 2.0, None], "c": ["a", "b", "a"], "t": ["some text", "more, text", "é ü"], "y": [0, 1, 0]}
)


def _parquet() -> bytes:
    buf = io.BytesIO()
    _FRAME.to_parquet(buf)
    return buf.getvalue()


TABLE_SEEDS = {
    "csv": [_FRAME.to_csv(index=False).encode(), b'a,b\n"1,2",3\n"x""y",\n'],
    "jsonl": [_FRAME.to_json(orient="records", lines=True).encode(), b'{"a": [1, {"b": 2}], "c": null}\n'],
    "parquet": [_parquet()],
}


# ------------------------------------------------------------------------------------------ strategies
@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid file with a few bytes flipped, inserted, deleted or duplicated, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


def file_bytes(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, random bytes behind a valid magic number, or a mutated valid file."""
    magic = st.sampled_from([s[:12] for s in seeds]).flatmap(lambda m: st.binary(max_size=256).map(lambda b: m + b))
    return st.one_of(st.binary(max_size=512), magic, mutated(seeds))


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "", " ", "a.png", "x.wav", "1,5", "０", "١٢", "\x00"]),
)
cells = st.one_of(
    _scalar,
    st.binary(max_size=20),
    st.lists(_scalar, max_size=3),
    st.dictionaries(st.text(max_size=3), _scalar, max_size=2),
)


def table_text(kind: str) -> st.SearchStrategy[bytes]:
    """Bytes for a table file of ``kind``: random, mutated valid, or (text formats) built from hostile cells."""
    seeds = TABLE_SEEDS[kind]
    out = [st.binary(max_size=512), mutated(seeds)]
    if kind == "csv":
        field = st.one_of(st.text(alphabet=st.characters(), max_size=12), st.sampled_from(['"', '""', ",", "\n", "\r"]))
        out.append(
            st.lists(st.lists(field, max_size=5), max_size=6).map(
                lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
            )
        )
    if kind == "jsonl":
        js = st.recursive(
            _scalar.filter(lambda v: not isinstance(v, float) or np.isfinite(v)),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
            max_leaves=8,
        )
        out.append(
            st.lists(st.dictionaries(st.text(max_size=4), js, max_size=4), max_size=5).map(
                lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
            )
        )
    return st.one_of(*out)


# ------------------------------------------------------------------------------------------ targets
@dataclass
class Target:
    """One fuzz target: a strategy of inputs and the function fed with each."""

    name: str
    inputs: st.SearchStrategy[Any]
    run: Callable[[Any], Any]


_TMP = Path(tempfile.mkdtemp(prefix="polymodal-fuzz-"))


def _read(kind: str) -> Callable[[bytes], Any]:
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[kind]

    def run(data: bytes) -> Any:
        path = _TMP / f"table{suffix}"
        path.write_bytes(data)
        table = read_table(path)
        # what fit and info do next with a table: infer each column's kind (hostile cells included)
        return infer_schema(table.frame, None)

    return run


def _processor(cls: type, state: dict[str, Any], **kw: Any) -> Any:
    p = cls("m", ["m"], ProcessingConfig(), **kw)
    p.set_state(state, {})
    return p


_CTX = LoadContext(_TMP, LIMITS)
(_TMP / "ok.png").write_bytes(IMAGE_SEEDS[0])
_IMAGE = {
    c: _processor(ImageProcessor, {"size": 16, "channels": c, "mean": [0.5] * c, "std": [0.25] * c}) for c in (1, 3)
}
_AUDIO = _processor(
    AudioProcessor,
    {"sample_rate": 8000, "seconds": 0.25, "n_mels": 8, "n_fft": 256, "hop": 80, "mean": 0.0, "std": 1.0},
)
_VIDEO = _processor(VideoProcessor, {"size": 8, "frames": 4, "mean": [0.5] * 3, "std": [0.25] * 3})
_TEXT = _processor(TextProcessor, {"vocab": ["<pad>", "<unk>", "some", "text"], "max_tokens": 16})
_TAB = _processor(
    TabularProcessor,
    {"numeric": ["x"], "categorical": ["c"], "stats": {"x": {"mean": 1.0, "std": 2.0}}, "categories": {"c": ["a"]}},
)


def _image_load(data: bytes) -> Any:
    f = InMemoryFile(data, "fuzz.img")
    return _IMAGE[1].load(f, _CTX), _IMAGE[3].load(f, _CTX)


def _audio_load(data: bytes) -> Any:
    return _AUDIO.load(InMemoryFile(data, "fuzz.wav"), _CTX)


def _video_load(data: bytes) -> Any:
    return _VIDEO.load(InMemoryFile(data, "fuzz.mp4"), _CTX)


def _path_cell(value: Any) -> Any:
    return _IMAGE[3].load(value, _CTX)


def _schema(rows: list[tuple[Any, Any]]) -> Any:
    frame = pd.DataFrame(rows, columns=["a", "y"])
    schema = infer_schema(frame, "y")
    return schema, infer_problem_type(frame["y"])


TARGETS = [
    Target("read_csv", table_text("csv"), _read("csv")),
    Target("read_jsonl", table_text("jsonl"), _read("jsonl")),
    Target("read_parquet", table_text("parquet"), _read("parquet")),
    Target("image", file_bytes(IMAGE_SEEDS), _image_load),
    Target("audio", file_bytes(AUDIO_SEEDS), _audio_load),
    Target("video", file_bytes(VIDEO_SEEDS), _video_load),
    # a clip read as audio: its audio track, decoded by PyAV instead of libsndfile
    Target("video_audio", file_bytes(VIDEO_SEEDS), lambda d: _AUDIO.load(InMemoryFile(d, "fuzz.mp4"), _CTX)),
    Target(
        "path_cell",
        st.one_of(
            cells, st.text(max_size=300), st.sampled_from(["ok.png", " ok.png ", "./ok.png", "a" * 300 + ".png"])
        ),
        _path_cell,
    ),
    Target("text_cell", cells, lambda v: _TEXT.load(v, _CTX)),
    Target("tabular_cell", st.tuples(cells, cells), lambda v: _TAB.load({"x": v[0], "c": v[1]}, _CTX)),
    Target("schema_cells", st.lists(st.tuples(cells, cells), min_size=1, max_size=12), _schema),
]
