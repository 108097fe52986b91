"""Synthetic captioning / QA scenes: captions and answers match the drawn scenes; held-out scenes are unseen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from polymodal.datasets import scenes as sc
from polymodal.datasets.speech import SpeechUnavailable, speak


def test_caption_reads_objects_in_order_with_articles():
    scene = (
        sc.SceneObject("red", "circle", 0, 0),
        sc.SceneObject("orange", "square", 1, 1),
        sc.SceneObject("blue", "triangle", 2, 2),
    )
    assert sc.caption(scene) == (
        "a red circle at the top left, an orange square at the centre and a blue triangle at the bottom right"
    )
    assert sc.caption(scene[:1]) == "a red circle at the top left"
    assert [sc.position_name(r, c) for r in range(3) for c in range(3)] == [
        "top left",
        "top",
        "top right",
        "left",
        "centre",
        "right",
        "bottom left",
        "bottom",
        "bottom right",
    ]


def test_render_puts_the_colour_in_the_right_cell():
    scene = (sc.SceneObject("blue", "square", 2, 0),)
    arr = np.asarray(sc.render(scene, np.random.default_rng(0))).astype(int)
    size = sc.SCENE_SIZE
    cell = arr[2 * size // 3 :, : size // 3]
    blue = (cell[..., 2] > 180) & (cell[..., 0] < 90)
    assert blue.sum() > 30
    assert not ((arr[: size // 3, :, 2] > 180) & (arr[: size // 3, :, 0] < 90)).any()


def test_make_captioning_holds_out_scenes_and_pairs(tmp_path):
    paths = sc.make_captioning(tmp_path, n_train=80, n_test=20, seed=3)
    train, test, novel = (pd.read_csv(p) for p in (paths.train, paths.test, paths.test_novel_pairs))
    assert len(train) == 80 and len(test) == 20 and len(novel) == 10
    assert not set(test["caption"]) & set(train["caption"])
    held = [f"{c} {s}" for c, s in sc.HELD_OUT_PAIRS]
    assert not train["caption"].map(lambda t: any(h in t for h in held)).any()
    assert not test["caption"].map(lambda t: any(h in t for h in held)).any()
    assert novel["caption"].map(lambda t: any(h in t for h in held)).all()
    assert Image.open(paths.root / train["image"][0]).size == (sc.SCENE_SIZE, sc.SCENE_SIZE)
    # deterministic
    again = sc.make_captioning(tmp_path / "again", n_train=80, n_test=20, seed=3)
    assert pd.read_csv(again.train)["caption"].equals(train["caption"])


def test_question_answers_are_right():
    scene = (sc.SceneObject("red", "circle", 0, 0), sc.SceneObject("green", "square", 1, 2))
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(200):
        q, a = sc.question_answer(scene, rng)
        seen[q] = a
    assert seen.get("how many shapes are there?") == "two"
    assert seen.get("what colour is the square?") == "green"
    assert seen.get("what shape is at the top left?") == "circle"
    assert seen.get("where is the green square?") == "right"
    assert seen.get("is there a red circle?") == "yes"
    assert all(
        a == "no"
        for q, a in seen.items()
        if q.startswith("is there") and q not in ("is there a red circle?", "is there a green square?")
    )
    assert {sc.question_kind(q) for q in seen} == set(sc.QUESTION_KINDS.values())
    with pytest.raises(ValueError, match="not a scene question"):
        sc.question_kind("why is the sky blue?")


def test_the_wording_of_a_yes_no_question_never_gives_the_answer_away():
    """Absent objects are asked about with the same article as present ones ("an orange square"): a question's
    wording alone must not tell its answer."""
    rng = np.random.default_rng(0)
    pairs = sc._pairs()
    asked: dict[str, set[str]] = {}
    for _ in range(3000):
        q, a = sc.question_answer(sc.random_scene(rng, pairs), rng)
        if q.startswith("is there"):
            asked.setdefault(q, set()).add(a)
    assert len(asked) == len(pairs)  # one wording per (colour, shape), whatever the answer
    assert all(q.startswith(f"is there {sc.article(q.split()[3])} ") for q in asked)
    assert all(answers == {"yes", "no"} for answers in asked.values())


def test_make_qa_text_only(tmp_path):
    paths = sc.make_qa(tmp_path, n_train=30, n_test=10, speech=False)
    train = pd.read_csv(paths.train)
    assert list(train.columns) == ["image", "question", "answer"] and not paths.speech
    assert train["image"].is_unique


def test_several_questions_per_scene(tmp_path):
    one = pd.read_csv(sc.make_qa(tmp_path / "one", n_train=30, n_test=10, speech=False).train)
    paths = sc.make_qa(tmp_path / "three", n_train=30, n_test=10, speech=False, questions_per_scene=3)
    train, test = pd.read_csv(paths.train), pd.read_csv(paths.test)
    per_scene = train.groupby("image")["question"]
    assert per_scene.size().between(2, 3).all() and per_scene.size().mean() > 2.5  # a 1-object scene has few
    assert per_scene.nunique().equals(per_scene.size())  # distinct questions about each scene
    assert test["image"].is_unique and len(test) == 10  # the test still asks one question per scene
    assert set(one["image"]) == set(train["image"])  # same scenes, more questions


def test_speech_questions_with_espeak(tmp_path, espeak_ng):
    paths = sc.make_qa(tmp_path, n_train=12, n_test=4, speech=True)
    train = pd.read_csv(paths.train)
    assert list(train.columns) == ["image", "question", "question_audio", "answer"]
    wave, sr = sf.read(paths.root / train["question_audio"][0])
    assert sr == 22050 and 0.5 < len(wave) / sr < 5
    assert speak("yes", tmp_path / "yes.wav").is_file()


def test_speech_without_espeak_says_how_to_install(tmp_path, monkeypatch):
    import polymodal.datasets.speech as speech

    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(SpeechUnavailable, match="apt-get install espeak-ng"):
        speak("hello", tmp_path / "x.wav")
    with pytest.raises(SpeechUnavailable):
        sc.make_qa(tmp_path / "qa", n_train=4, n_test=2, speech=True)
    assert not sc.make_qa(tmp_path / "qa2", n_train=4, n_test=2, speech=None).speech
