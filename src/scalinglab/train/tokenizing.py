"""The text tokenizers of a corpus: their registry, and turning train/validation text into ids.

``"byte"`` (vocabulary 256), ``"char"`` (the sorted set of characters of the text, as nanoGPT's
char-level Shakespeare) and ``"bpe"`` (byte-level BPE trained locally on the training split
with Hugging Face ``tokenizers``); the synthetic source has its own symbols (``"symbol"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_BPE_VOCAB",
    "SYNTHETIC_TOKENIZER",
    "TEXT_TOKENIZERS",
    "TOKENIZERS",
    "tokenize_text",
]

# Every tokenizer a corpus can have: the text tokenizers, and the synthetic source's own symbols.
TEXT_TOKENIZERS = ("byte", "char", "bpe")
SYNTHETIC_TOKENIZER = "symbol"
TOKENIZERS = (*TEXT_TOKENIZERS, SYNTHETIC_TOKENIZER)
DEFAULT_BPE_VOCAB = (
    4096  # small enough that the embedding does not dominate million-parameter models
)


def tokenize_text(
    train: bytes, val: bytes, tokenizer: str, vocab_size: int | None, out: Path
) -> tuple[np.ndarray, np.ndarray, int]:
    """The train and validation token ids of ``train``/``val`` text and the vocabulary size.

    ``tokenizer`` is one of :data:`TEXT_TOKENIZERS`; what it learned (the char vocabulary, the
    BPE merges) is written into the folder ``out``.
    """
    if tokenizer == "byte":
        if vocab_size not in (None, 256):
            raise ValueError(f"the byte tokenizer has vocab_size 256, got {vocab_size}")
        return np.frombuffer(train, np.uint8), np.frombuffer(val, np.uint8), 256
    if tokenizer == "char":
        # Whole-text vocabulary, sorted by code point, as nanoGPT's prepare.py does.
        train_cp = np.frombuffer(train.decode("utf-8", "replace").encode("utf-32-le"), np.uint32)
        val_cp = np.frombuffer(val.decode("utf-8", "replace").encode("utf-32-le"), np.uint32)
        chars, ids = np.unique(np.concatenate([train_cp, val_cp]), return_inverse=True)
        if vocab_size not in (None, len(chars)):
            raise ValueError(
                f"the char tokenizer's vocabulary is the text's {len(chars)} characters; "
                f"got vocab_size {vocab_size}"
            )
        (out / "vocab.json").write_text(json.dumps([chr(c) for c in chars.tolist()]))
        dtype = np.uint8 if len(chars) <= 256 else np.uint16 if len(chars) <= 65536 else np.uint32
        ids = ids.astype(dtype)
        return ids[: len(train_cp)], ids[len(train_cp) :], len(chars)
    if tokenizer == "bpe":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        size = vocab_size or DEFAULT_BPE_VOCAB
        if not 257 <= size <= 65536:
            raise ValueError(f"bpe vocab_size must be in [257, 65536], got {size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        train_text = train.decode("utf-8", "replace")
        val_text = val.decode("utf-8", "replace")
        chunks = _chunks(train_text)
        tok.train_from_iterator(chunks, trainer=trainer)  # train split only: no val leakage
        tok.save(str(out / "tokenizer.json"))
        dtype = np.uint16

        def encode(text: str) -> np.ndarray:
            ids = [e.ids for e in tok.encode_batch(_chunks(text))]
            flat = np.fromiter((i for seq in ids for i in seq), dtype=np.int64)
            return flat.astype(dtype)

        return encode(train_text), encode(val_text), tok.get_vocab_size()
    raise ValueError(f"tokenizer must be one of {TEXT_TOKENIZERS}, got {tokenizer!r}")


def _chunks(text: str, size: int = 1 << 16) -> list[str]:
    """Split at line ends near ``size`` characters so batch encoding runs in parallel."""
    out, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out
