"""Training corpora as memory-mapped token files, built once and cached.

Three sources need no download:

- ``"stdlib"``: the ``.py`` files of the running Python's standard library, sorted by path,
  without ``site-packages`` and the test suites (≈ 12 MB on CPython 3.11);
- any text file or folder, given as a path;
- ``"synthetic"``: a seeded sparse Markov source (:mod:`.synthetic`) whose entropy rate
  is computed exactly, so a fitted irreducible loss can be checked against the truth.

Three tokenizers (:mod:`.tokenizing`): ``"byte"`` (vocabulary 256, the default), ``"char"``
(the sorted set of characters of the text, as nanoGPT's char-level Shakespeare), and ``"bpe"``
(byte-level BPE trained locally on the training split with Hugging Face ``tokenizers``).

The train/validation split is deterministic. A single file keeps its last 10 % for validation
(nanoGPT's split of tinyshakespeare). A folder of at least 10 documents sends each document to
validation when the CRC-32 of its relative path falls in the lowest 10 % — whole documents, so
no file is split across the two sides; smaller folders split their concatenation like one file.

Tokens live in ``<cache>/corpora/<name>-<key>/{train,val}.bin`` (raw little-endian arrays
opened with :func:`numpy.memmap`), where ``<cache>`` is ``cache_dir``, ``$SCALINGLAB_CACHE`` or
``~/.cache/scalinglab`` and ``<key>`` hashes the source files (path, size, mtime), the
tokenizer and the format version. A build writes a temporary folder, fsyncs it and renames it
into place, so concurrent workers never see half a corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The tokenizer names and the synthetic source name corpora, so they are importable from here too.
from scalinglab.train.synthetic import SyntheticSource, parse_synthetic
from scalinglab.train.tokenizing import (
    SYNTHETIC_TOKENIZER,
    TEXT_TOKENIZERS,
    TOKENIZERS,
    tokenize_text,
)

__all__ = [
    "SYNTHETIC_TOKENIZER",
    "TEXT_TOKENIZERS",
    "TOKENIZERS",
    "Corpus",
    "SyntheticSource",
    "cache_root",
    "load_corpus",
    "parse_synthetic",
    "stdlib_files",
]

VAL_FRACTION = 0.1
_FORMAT_VERSION = 2
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus.

    Attributes
    ----------
    name
        ``"stdlib"``, ``"synthetic"`` or the resolved path of a text file or folder.
    tokenizer
        ``"byte"``, ``"char"``, ``"bpe"``, or ``"symbol"`` for the synthetic source.
    vocab_size
        Size of the vocabulary (every token id is below it).
    train_tokens, val_tokens
        1-D memory-mapped arrays of token ids.
    entropy_rate_nats
        The source's entropy rate in nats per token; known only for ``"synthetic"``.
    path
        The cache folder holding the token files (and ``tokenizer.json`` / ``vocab.json``).
    """

    name: str
    tokenizer: str
    vocab_size: int
    train_tokens: np.ndarray = field(repr=False)
    val_tokens: np.ndarray = field(repr=False)
    entropy_rate_nats: float | None = None
    path: Path | None = None


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$SCALINGLAB_CACHE``, else ``~/.cache/scalinglab``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SCALINGLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "scalinglab"


def stdlib_files() -> tuple[Path, list[Path]]:
    """The standard library root and its ``.py`` files, sorted, without tests and site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]  # prune: site-packages is large
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    files = [f for f in files if f.is_file()]
    return root, sorted(files, key=lambda f: f.relative_to(root).parts)


# --- building and caching --------------------------------------------------------------------


def _fingerprint(files: list[Path], root: Path) -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        rel = f.relative_to(root) if f != root else f.name
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _text_files(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path, [path]
    files = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).parts
        if any(part.startswith(".") for part in rel) or not f.is_file():
            continue
        with f.open("rb") as fh:
            if b"\0" in fh.read(8192):  # binary, not text
                continue
        files.append(f)
    if not files:
        raise ValueError(f"no text files under {path}")
    return path, files


def _split_documents(root: Path, files: list[Path]) -> tuple[bytes, bytes]:
    """Train and validation bytes (see the module notes for the rule)."""
    docs = [f.read_bytes() for f in files]
    if len(files) >= 10:
        rels = [f.relative_to(root).as_posix() for f in files]
        is_val = [zlib.crc32(r.encode()) % 100 < VAL_FRACTION * 100 for r in rels]
        if any(is_val) and not all(is_val):
            train = b"".join(d for d, v in zip(docs, is_val, strict=True) if not v)
            val = b"".join(d for d, v in zip(docs, is_val, strict=True) if v)
            return train, val
    data = b"".join(docs)
    cut = int(len(data) * (1 - VAL_FRACTION))
    return data[:cut], data[cut:]


def _write_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as fh:
        fh.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def load_corpus(
    name: str = "stdlib",
    *,
    tokenizer: str = "byte",
    vocab_size: int | None = None,
    cache_dir: Path | str | None = None,
    seed: int = 0,
) -> Corpus:
    """Load (building and caching on first use) a tokenized corpus.

    Parameters
    ----------
    name
        ``"stdlib"``, ``"synthetic"`` (or ``"synthetic:order=1,alphabet=64"``, any fields of
        :class:`SyntheticSource` but the seed), or a path to a text file or folder.
    tokenizer
        ``"byte"``, ``"char"`` or ``"bpe"``. The synthetic source emits symbols directly and
        accepts only the default ``"byte"`` (or ``"symbol"``).
    vocab_size
        BPE: the vocabulary to learn (default 4096). Synthetic: the alphabet (default 16).
        Byte and char: must be left ``None`` (or equal their natural size).
    cache_dir
        Cache root (see the module notes).
    seed
        Synthetic only: the seed of the source and its samples.

    Returns
    -------
    Corpus

    Raises
    ------
    ValueError
        For an unknown tokenizer, a missing path, or an empty or too small corpus.
    """
    root = cache_root(cache_dir) / "corpora"
    if name == "synthetic" or name.startswith("synthetic:"):
        if tokenizer not in ("byte", SYNTHETIC_TOKENIZER):
            raise ValueError(
                f"the synthetic corpus is made of symbols; tokenizer {tokenizer!r} does not apply"
            )
        source = parse_synthetic(name, vocab_size=vocab_size, seed=seed)
        key = hashlib.sha1(f"{_FORMAT_VERSION}|{source!r}".encode()).hexdigest()[:16]

        def build_synthetic(out: Path) -> dict[str, Any]:
            # 16.8 M training tokens: more than a CPU sweep trains on, so no run repeats data.
            # Chains of 16 384 (train) and 65 536 (val) tokens: joins, where the Markov
            # dependence breaks, are 6e-5 and 1.5e-5 of the targets (and only raise the loss).
            train = source.sample(1 << 24, stream_seed=1, n_streams=1024)
            val = source.sample(1 << 20, stream_seed=2, n_streams=16)
            _write_array(out / "train.bin", train)
            _write_array(out / "val.bin", val)
            return {
                "vocab_size": source.alphabet,
                "dtype": "uint8",
                "entropy_rate_nats": source.entropy_rate_nats,
                "source": dataclasses.asdict(source),
            }

        return _cached(root / f"synthetic-{key}", name, SYNTHETIC_TOKENIZER, build_synthetic)

    if tokenizer not in TEXT_TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TEXT_TOKENIZERS}, got {tokenizer!r}")
    if name == "stdlib":
        src_root, files = stdlib_files()
        label = "stdlib"
        slug = f"stdlib-py{sys.version_info.major}{sys.version_info.minor}"
    else:
        path = Path(name).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"corpus {name!r} is not 'stdlib', 'synthetic' or an existing path")
        src_root, files = _text_files(path)
        label = str(path)
        slug = "".join(ch if ch.isalnum() else "_" for ch in path.name)[:40] or "text"
    ident = f"{_FORMAT_VERSION}|{label}|{tokenizer}|{vocab_size}|{_fingerprint(files, src_root)}"
    key = hashlib.sha1(ident.encode()).hexdigest()[:16]

    def build_text(out: Path) -> dict[str, Any]:
        train, val = _split_documents(src_root if src_root.is_dir() else src_root.parent, files)
        train_ids, val_ids, vocab = tokenize_text(train, val, tokenizer, vocab_size, out)
        _write_array(out / "train.bin", train_ids)
        _write_array(out / "val.bin", val_ids)
        return {
            "vocab_size": int(vocab),
            "dtype": train_ids.dtype.name,
            "entropy_rate_nats": None,
            "files": len(files),
        }

    return _cached(root / f"{slug}-{tokenizer}-{key}", label, tokenizer, build_text)


def _cached(final: Path, name: str, tokenizer: str, build: Any) -> Corpus:
    if not (final / "meta.json").exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            meta = build(tmp)
            meta.update(name=name, tokenizer=tokenizer, format=_FORMAT_VERSION)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            for f in tmp.iterdir():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(tmp, final)  # atomic; fails if another worker won the race
            except OSError:
                if not (final / "meta.json").exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((final / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    arrays = []
    for split in ("train", "val"):
        f = final / f"{split}.bin"
        if f.stat().st_size == 0:
            raise ValueError(f"corpus {name!r} has an empty {split} split")
        arrays.append(np.memmap(f, dtype=dtype, mode="r"))
    return Corpus(
        name=name,
        tokenizer=tokenizer,
        vocab_size=int(meta["vocab_size"]),
        train_tokens=arrays[0],
        val_tokens=arrays[1],
        entropy_rate_nats=meta.get("entropy_rate_nats"),
        path=final,
    )
