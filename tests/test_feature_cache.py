"""The frozen-feature cache: computed once per (model, preprocessing, content), reused across epochs, runs and
save/load, invalidated when the file, the preprocessing or the model changes; `polymodal cache info|clear`."""

from __future__ import annotations

import json

import hf_tiny
import pytest
import torch
from conftest import make_table, tiny_config
from PIL import Image

from polymodal import Predictor
from polymodal.features.cache import FeatureCache, get_cache


# ----------------------------------------------------------------------------------------- the store itself
def test_put_get_across_instances_and_memory_limit(tmp_path):
    a = FeatureCache(tmp_path, memory_bytes=100)
    entry = {"tokens": torch.arange(12.0).view(3, 4), "pooled": torch.ones(4)}
    a.put("m1", "ab12", entry, meta={"source": "here"})
    assert torch.equal(a.get("m1", "ab12")["tokens"], entry["tokens"])
    assert a.get("m1", "cd34") is None and a.get("m2", "ab12") is None
    b = FeatureCache(tmp_path)  # a new process: read from disk
    assert torch.equal(b.get("m1", "ab12")["pooled"], entry["pooled"])
    small = FeatureCache(None, memory_bytes=100)  # memory only, 100 bytes: keeps the newest entries that fit
    for i in range(5):
        small.put("m", f"k{i}", {"t": torch.zeros(5)})  # 20 bytes each
    small.put("m", "k5", {"t": torch.zeros(5)})
    assert small.get("m", "k0") is None and small.get("m", "k5") is not None


def test_damaged_entry_is_a_miss_not_a_crash(tmp_path):
    c = FeatureCache(tmp_path)
    c.put("m", "ab12", {"tokens": torch.ones(2, 2)})
    path = tmp_path / "m" / "ab" / "ab12.safetensors"
    path.write_bytes(b"not a safetensors file")
    assert FeatureCache(tmp_path).get("m", "ab12") is None


def test_info_and_clear(tmp_path):
    c = FeatureCache(tmp_path)
    c.put("aaa111", "k1", {"tokens": torch.ones(2)}, meta={"source": "bert-tiny", "encoder": "hf_text"})
    c.put("bbb222", "k1", {"tokens": torch.ones(2)}, meta={"source": "vit-tiny", "encoder": "hf_image"})
    info = {r["model"]: r for r in c.info()}
    assert info["aaa111"]["source"] == "bert-tiny" and info["aaa111"]["entries"] == 1 and info["aaa111"]["bytes"] > 0
    assert c.clear("aaa") == 1 and [r["model"] for r in c.info()] == ["bbb222"]
    assert c.get("aaa111", "k1") is None
    assert c.clear() == 1 and c.info() == []


# ------------------------------------------------------------------------------------- in a frozen encoder
@pytest.fixture
def image_table(tmp_path):
    return make_table(tmp_path / "data", 24, seed=7, prefix="c_", missing_rate=0.0)


def _fit(table, model, epochs=3):
    cfg = tiny_config(max_epochs=epochs, batch_size=32)  # one batch of all 20 training rows per epoch
    cfg["encoders"]["image"] = {"name": "hf_image", "model": str(model), "dim": 16}
    return Predictor(
        "label", config=cfg, ignore=["audio", "text", "reading", "region"], verbose=False, preset="fast"
    ).fit(table)


def _files(root):
    return sorted(p.name for p in root.rglob("*.safetensors"))


def test_features_are_computed_once_and_reused(image_table, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(root))
    model = hf_tiny.build("vit", tmp_path / "vit")
    cache = get_cache()
    p = _fit(image_table, model, epochs=3)
    # each image computed once (all 24 rows, in whichever epoch first drew them), later lookups read it back
    assert cache.misses == 24 and len(_files(root)) == 24
    # 3 epochs of 20 training + 4 validation rows, and the calibration's pass over the 4 validation rows
    assert cache.hits + cache.misses == 3 * (20 + 4) + 4

    cache.forget_memory()
    before = cache.misses
    _fit(image_table, model, epochs=1)  # another run: everything from disk
    assert cache.misses == before

    # a saved and reloaded run fingerprints to the same model: its predictions reuse the entries too
    q = Predictor.load(p.save(tmp_path / "run"), verbose=False)
    q.predict(image_table)
    assert cache.misses == before


def test_changed_file_or_model_or_preprocessing_invalidates(image_table, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(root))
    model = hf_tiny.build("vit", tmp_path / "vit")
    cache = get_cache()
    _fit(image_table, model, epochs=1)
    assert cache.misses == 24

    # one image file changes: exactly that image is computed again
    first = image_table.parent / "images" / "c_00000.png"
    im = Image.open(first)
    im.transpose(Image.FLIP_LEFT_RIGHT).rotate(90).save(first)
    _fit(image_table, model, epochs=1)
    assert cache.misses == 25 and len(_files(root)) == 25

    # other weights (same architecture): a new model folder, every image computed again
    other = hf_tiny.build("vit", tmp_path / "vit-other", seed=1)
    _fit(image_table, other, epochs=1)
    assert cache.misses == 49
    assert len([d for d in root.iterdir() if d.is_dir()]) == 2

    # other preprocessing (the image processor normalises differently): new keys
    conf = json.loads((model / "preprocessor_config.json").read_text())
    conf["image_mean"] = [0.4, 0.4, 0.4]
    (model / "preprocessor_config.json").write_text(json.dumps(conf))
    _fit(image_table, model, epochs=1)
    assert cache.misses == 73


def test_cache_off_keeps_features_in_memory_only(image_table, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(root))
    cfg = tiny_config(max_epochs=2)
    cfg["encoders"]["image"] = {
        "name": "hf_image",
        "model": str(hf_tiny.build("vit", tmp_path / "vit")),
        "dim": 16,
        "cache": False,
    }
    Predictor("label", config=cfg, ignore=["audio", "text", "reading", "region"], verbose=False, preset="fast").fit(
        image_table
    )
    assert not root.exists() or _files(root) == []


def test_cli_cache_info_and_clear(image_table, tmp_path, monkeypatch, cli):
    root = tmp_path / "cache"
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(root))
    _fit(image_table, hf_tiny.build("vit", tmp_path / "vit"), epochs=1)
    r = cli("cache", "info")
    assert r.exit_code == 0 and "hf_image" in r.stdout and "24" in r.stdout
    r = cli("cache", "clear", "--model", "zzzz")
    assert r.exit_code == 2 and "cache info" in r.stderr
    r = cli("cache", "clear")
    assert r.exit_code == 0 and "removed 1 cached model" in r.stdout
    assert "empty" in cli("cache", "info").stdout


def test_unwritable_cache_folder_warns_and_keeps_going(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    c = FeatureCache(blocker / "cache")  # cannot be created: its parent is a file
    c.put("m", "ab12", {"tokens": torch.ones(2)})
    assert c.get("m", "ab12") is not None  # still served from memory
    assert "POLYMODAL_CACHE_DIR" in caplog.text
