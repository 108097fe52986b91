"""The target tokenizer of a generation task: text ↔ token ids, with pad / begin / end tokens.

Either a byte-level BPE trained on the training targets with the ``tokenizers`` library (lossless: decoding the
ids of a text gives the text back), or the tokenizer of a pretrained model. Either way its state is the
``tokenizers`` JSON (saved in the run directory's task.json), so a saved run needs no other file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


@dataclass
class TargetTokenizer:
    """A ``tokenizers.Tokenizer`` and the ids of its padding, begin-of-sequence and end-of-sequence tokens."""

    tokenizer: Any  # tokenizers.Tokenizer
    pad_id: int
    bos_id: int
    eos_id: int
    source: str = "bpe"

    # --- building ---------------------------------------------------------------------------------------------
    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int) -> "TargetTokenizer":
        """A byte-level BPE on ``texts`` (no unknown token: any text can be encoded)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[PAD, BOS, EOS],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(list(texts), trainer)
        pad, bos, eos = (tok.token_to_id(t) for t in (PAD, BOS, EOS))
        assert pad is not None and bos is not None and eos is not None, "the trainer adds the special tokens"
        return cls(tok, pad, bos, eos, "bpe")

    @classmethod
    def from_pretrained(cls, source: str) -> "TargetTokenizer":
        """The tokenizer of a pretrained model (a local folder or a hub id in the local cache). Its begin/end tokens
        are its BOS/EOS, or CLS/SEP for BERT-style tokenizers."""
        from ..encoders.hf_hub import load_preprocessor

        hf = load_preprocessor("text", source)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError(
                f"the tokenizer of '{source}' is not a fast (Rust) tokenizer; generation needs one. "
                "Use generation.tokenizer: bpe instead."
            )
        bos = hf.bos_token_id if hf.bos_token_id is not None else hf.cls_token_id
        eos = hf.eos_token_id if hf.eos_token_id is not None else hf.sep_token_id
        if bos is None or eos is None:
            raise ConfigError(
                f"the tokenizer of '{source}' has no begin/end (BOS/EOS or CLS/SEP) tokens; "
                "use generation.tokenizer: bpe instead."
            )
        pad = hf.pad_token_id if hf.pad_token_id is not None else eos
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(backend.to_str())
        tok.no_padding()
        tok.no_truncation()
        return cls(tok, int(pad), int(bos), int(eos), str(source))

    # --- use ----------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def special_ids(self) -> list[int]:
        return sorted({self.pad_id, self.bos_id, self.eos_id})

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer.encode(str(text), add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, stopping at the first end token; special tokens are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(i)
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def decode_batch(self, rows: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(r) for r in rows]

    # --- persistence --------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "tokenizer": json.loads(self.tokenizer.to_str()),
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "source": self.source,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TargetTokenizer":
        from tokenizers import Tokenizer

        return cls(
            Tokenizer.from_str(json.dumps(state["tokenizer"])),
            state["pad_id"],
            state["bos_id"],
            state["eos_id"],
            state.get("source", "bpe"),
        )
