"""The on-disk sample store: round trips, concurrent writers, eviction, damaged shards, and fits that read from it."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_table, tiny_config

from polymodal import Predictor
from polymodal.data import sample_cache
from polymodal.data.sample_cache import SampleStore, parse_size
from polymodal.errors import ConfigError


def _items() -> list:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (3, 5, 7), dtype=np.uint8),
        rng.standard_normal(11).astype(np.float32),
        (rng.standard_normal((4, 2)).astype(np.float32), np.arange(3, dtype=np.int64)),
        np.zeros((0, 4), np.float64),
        np.array(7, np.int16),
    ]


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_round_trip_arrays_tuples_and_shapes(tmp_path):
    store = SampleStore(tmp_path / "s")
    slots = [store.put("sig", f"k{i}", it) for i, it in enumerate(_items())]
    assert all(s is not None for s in slots)
    assert store.put("sig", "obj", ["not", "an", "array"]) is None  # the caller keeps such items in memory
    store.flush()
    for it, slot in zip(_items(), slots):
        assert _same(it, store.read(slot))
    # Another process (or a DataLoader worker) sees the same entries through the index.
    other = pickle.loads(pickle.dumps(store))
    found = other.lookup("sig", [f"k{i}" for i in range(len(slots))] + ["absent"])
    assert sorted(found) == [f"k{i}" for i in range(len(slots))]
    for i, it in enumerate(_items()):
        assert _same(it, other.read(found[f"k{i}"]))
    assert other.lookup("other-signature", ["k0"]) == {}
    got = other.read(found["k0"])
    got[0, 0, 0] = 1  # a read is a copy: editing it leaves the store as written
    assert _same(_items()[0], other.read(found["k0"]))


def _writer(root: str, worker: int, n: int) -> None:
    store = SampleStore(root)
    for i in range(n):
        # Both processes write the shared keys too: one index row wins, both shards stay readable.
        store.put("sig", f"shared{i}", np.full(64, i, np.int32))
        store.put("sig", f"w{worker}-{i}", np.full(32, worker * 1000 + i, np.int32))
    store.close()


def test_concurrent_writers_in_two_processes(tmp_path):
    root = str(tmp_path / "s")
    ctx = mp.get_context("fork")  # spawn would import torch twice (slow); the writers use the stdlib only
    procs = [ctx.Process(target=_writer, args=(root, w, 300)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = SampleStore(root)
    keys = [f"shared{i}" for i in range(300)] + [f"w{w}-{i}" for w in range(2) for i in range(300)]
    found = store.lookup("sig", keys)
    assert len(found) == len(keys)
    for i in range(300):
        assert np.array_equal(store.read(found[f"shared{i}"]), np.full(64, i, np.int32))
        for w in range(2):
            assert np.array_equal(store.read(found[f"w{w}-{i}"]), np.full(32, w * 1000 + i, np.int32))


def test_eviction_keeps_the_store_under_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_cache, "_SHARD_BYTES", 4096)
    store = SampleStore(tmp_path / "s", max_bytes=20_000)
    for i in range(40):
        store.put("sig", f"k{i}", np.full(1024, i, np.uint8))  # 40 KB in all, 4 items a shard
        store.flush()
    info = store.info()
    assert info["bytes"] <= 20_000
    assert 0 < info["entries"] < 40
    found = store.lookup("sig", [f"k{i}" for i in range(40)])
    assert "k39" in found and "k0" not in found  # the oldest went first
    for key, slot in found.items():
        assert np.array_equal(store.read(slot), np.full(1024, int(key[1:]), np.uint8))


def test_damaged_or_truncated_shard_is_a_miss(tmp_path):
    store = SampleStore(tmp_path / "s")
    a = store.put("sig", "a", np.arange(100, dtype=np.int64))
    b = store.put("sig", "b", np.arange(100, dtype=np.int64) * 2)
    store.close()
    assert a is not None and b is not None
    shard = tmp_path / "s" / "shards" / a.shard
    data = bytearray(shard.read_bytes())
    data[a.offset + 3] ^= 0xFF  # a flipped byte in a's bytes
    shard.write_bytes(bytes(data[: b.offset + b.nbytes // 2]))  # and b cut in half, as by a killed writer
    fresh = SampleStore(tmp_path / "s")
    assert fresh.read(a) is None and fresh.read(b) is None


def test_read_only_folder_warns_once_and_keeps_going(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = SampleStore(blocker / "s")
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        assert store.put("sig", "a", np.zeros(3)) is None
        assert store.put("sig", "b", np.zeros(3)) is None
        assert store.lookup("sig", ["a"]) == {}
    assert store.broken
    assert sum("cannot use the sample cache" in r.message for r in caplog.records) == 1


def test_sizes_and_settings(monkeypatch, tmp_path):
    assert parse_size("20G") == 20 << 30 and parse_size("512 MiB") == 512 << 20 and parse_size("1000") == 1000
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("lots")
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", "memory")
    assert sample_cache.sample_store() is None
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "x"))
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE_SIZE", "1M")
    store = sample_cache.sample_store()
    assert store is not None and store.root == tmp_path / "x" and store.max_bytes == 1 << 20


@pytest.fixture
def table(tmp_path_factory) -> Path:
    return make_table(tmp_path_factory.mktemp("sample-cache-table"), 48, seed=3)


def _fit(table: Path) -> Predictor:
    return Predictor(label="label", config=tiny_config(max_epochs=1), seed=0, preset="fast", verbose=False).fit(table)


def test_fit_and_predict_equal_between_memory_and_disk(table, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", "memory")
    in_memory = _fit(table)
    p_memory = in_memory.predict_proba(table)
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    on_disk = _fit(table)
    p_disk = on_disk.predict_proba(table)
    np.testing.assert_allclose(p_disk.to_numpy(), p_memory.to_numpy(), rtol=1e-5, atol=1e-6)
    assert SampleStore(tmp_path / "samples").info()["entries"] > 0


def test_second_fit_on_the_same_files_decodes_nothing(table, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    _fit(table)
    store = sample_cache.sample_store()
    assert store is not None and store.misses > 0
    entries = store.info()["entries"]
    store.hits = store.misses = 0
    _fit(table)
    assert store.misses == 0 and store.hits >= entries
    assert store.info()["entries"] == entries
    assert os.listdir(tmp_path / "samples" / "shards")


def _equal_items(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return _same(a if isinstance(a, tuple) else np.asarray(a), b if isinstance(b, tuple) else np.asarray(b))


def test_damaged_shards_are_decoded_again_through_prepare(table, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", "memory")
    pipeline = _fit(table).pipeline
    assert pipeline is not None
    expected = pipeline.prepare(table).prepared
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    pipeline.prepare(table)  # fills the store
    for shard in (tmp_path / "samples" / "shards").iterdir():
        shard.write_bytes(bytes(b ^ 0x5A for b in shard.read_bytes()))
    got = pipeline.prepare(table).prepared
    assert any(type(col).__name__ == "StoredColumn" for col in got.items.values())
    for m in expected.items:
        assert all(_equal_items(x, y) for x, y in zip(expected.column(m), got.column(m), strict=True))


def test_cli_cache_info_and_clear_cover_samples(table, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    _fit(table)
    entries = SampleStore(tmp_path / "samples").info()["entries"]
    r = cli("cache", "info")
    text = " ".join(r.stdout.split())  # rich wraps long lines
    assert r.exit_code == 0 and f"sample cache: {tmp_path / 'samples'}: {entries} entries" in text
    r = cli("cache", "clear")
    assert r.exit_code == 0 and f"removed {entries} cached sample(s)" in " ".join(r.stdout.split())
    assert SampleStore(tmp_path / "samples").info()["entries"] == 0
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", "memory")
    assert "sample cache: off" in cli("cache", "info").stdout


def test_loader_workers_read_the_store(table, tmp_path, monkeypatch):
    from polymodal.data.dataset import make_loader

    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", "memory")
    pipeline = _fit(table).pipeline
    assert pipeline is not None
    expected = pipeline.prepare(table).prepared
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    got = pipeline.prepare(table).prepared

    def batches(prepared, workers):
        return list(make_loader(prepared, pipeline.processors, 16, False, num_workers=workers))

    for a, b in zip(batches(expected, 0), batches(got, 1), strict=True):
        assert a.inputs.keys() == b.inputs.keys()
        for k in a.inputs:
            assert torch.equal(a.inputs[k], b.inputs[k]), k
        for k in a.masks:
            assert torch.equal(a.masks[k], b.masks[k]), k
