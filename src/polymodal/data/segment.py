"""Splitting a text into the tokens of the from-scratch text encoders, in any script.

Chinese and Japanese write no spaces between words, so a "word" regex (``\\w+``) turns a whole clause into one token
that a vocabulary never sees twice. Each segmenter below keeps Latin-script words (and numbers, Hangul words: any run
of word characters outside the CJK ranges) as words and punctuation as single tokens; they differ only on runs of
CJK characters:

``regex``        the run is one token (what polymodal did before CJK support; kept for old run directories)
``char``         each CJK character is a token
``char_bigram``  each character and each pair of adjacent characters, interleaved (c1, c1c2, c2, c2c3, c3, ...)
``word``         words from jieba's dictionary segmentation (optional: ``pip install 'polymodal[cjk]'``)

``DEFAULT_SEGMENTATION`` is the one that scored best on the generated Chinese review task
(``benchmarks/cjk_text.py``, figures in docs/BENCHMARKS.md). The segmentation a processor was fitted with is saved
in its JSON state, so a run directory predicts with the tokens it was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import ConfigError
from ..registry import Registry

Segmenter = Callable[[str], list[str]]

SEGMENTERS: Registry[Segmenter] = Registry("text segmentation")

#: Han ideographs (with extensions A/B and compatibility forms), CJK punctuation-free kana and the iteration mark.
CJK_CHARS = "\u3005\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
# One CJK character, a run of other word characters, or one punctuation mark / symbol.
_PIECE = re.compile(rf"([{CJK_CHARS}]+)|([^\W{CJK_CHARS}]+)|([^\w\s])", re.UNICODE)
_CJK_RUN = re.compile(rf"[{CJK_CHARS}]+")

#: The default of ``processing.text_segmentation`` (chosen by benchmarks/cjk_text.py).
DEFAULT_SEGMENTATION = "char_bigram"
#: What a run directory saved before CJK support used (its processor state names no segmentation).
LEGACY_SEGMENTATION = "regex"


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds at least one CJK character."""
    return _CJK_RUN.search(text) is not None


def _split(text: str, cjk_run: Callable[[str], list[str]]) -> list[str]:
    out: list[str] = []
    for run, word, mark in _PIECE.findall(text.lower()):
        if run:
            out.extend(cjk_run(run))
        else:
            out.append(word or mark)
    return out


@SEGMENTERS.register("regex")
def regex_tokens(text: str) -> list[str]:
    """Word-character runs and punctuation marks: a CJK clause stays one token."""
    return _split(text, lambda run: [run])


@SEGMENTERS.register("char")
def char_tokens(text: str) -> list[str]:
    """Each CJK character a token; other words stay words."""
    return _split(text, list)


def _chars_and_bigrams(run: str) -> list[str]:
    out = [run[0]]
    for i in range(1, len(run)):
        out += [run[i - 1 : i + 1], run[i]]
    return out


@SEGMENTERS.register("char_bigram")
def char_bigram_tokens(text: str) -> list[str]:
    """Each CJK character and each pair of adjacent ones (so "不好" is seen both as 不, 好 and as 不好)."""
    return _split(text, _chars_and_bigrams)


def _jieba() -> object:
    try:
        import jieba
    except ImportError:
        raise ConfigError(
            "processing.text_segmentation 'word' needs jieba: pip install 'polymodal[cjk]' "
            "(or choose 'char_bigram' / 'char', which need nothing)"
        ) from None
    jieba.setLogLevel(60)  # its "Building prefix dict" lines go to stderr on the first call otherwise
    return jieba


@SEGMENTERS.register("word")
def word_tokens(text: str) -> list[str]:
    """Words of jieba's dictionary segmentation on CJK runs; other words stay words."""
    jieba = _jieba()
    return _split(text, lambda run: [w for w in jieba.lcut(run, HMM=True) if w.strip()])  # type: ignore[attr-defined]


def segmenter(name: str) -> Segmenter:
    """The registered segmenter ``name`` (a ConfigError listing the choices when unknown)."""
    fn: Segmenter = SEGMENTERS.get(name)  # type: ignore[assignment]
    if name == "word":
        _jieba()  # fail at fit/load time with the install hint, not on the first row
    return fn


def tokenize(text: str, segmentation: str = DEFAULT_SEGMENTATION) -> list[str]:
    """The lower-cased tokens of ``text`` under ``segmentation``."""
    return segmenter(segmentation)(text)
