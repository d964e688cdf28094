"""Training corpora as memory-mapped token files, built once and cached.

Three sources need no download:

- ``"stdlib"``: the ``.py`` files of the running Python's standard library, sorted by path,
  without ``site-packages`` and the test suites (≈ 12 MB on CPython 3.11);
- any text file or folder, given as a path;
- ``"synthetic"``: a seeded sparse Markov source (:class:`SyntheticSource`) whose entropy rate
  is computed exactly, so a fitted irreducible loss can be checked against the truth.

Three tokenizers: ``"byte"`` (vocabulary 256, the default), ``"char"`` (the sorted set of
characters of the text, as nanoGPT's char-level Shakespeare), and ``"bpe"`` (byte-level BPE
trained locally on the training split with Hugging Face ``tokenizers``).

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
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

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

# Every tokenizer a corpus can have: the text tokenizers, and the synthetic source's own symbols.
TEXT_TOKENIZERS = ("byte", "char", "bpe")
SYNTHETIC_TOKENIZER = "symbol"
TOKENIZERS = (*TEXT_TOKENIZERS, SYNTHETIC_TOKENIZER)
VAL_FRACTION = 0.1
DEFAULT_BPE_VOCAB = (
    4096  # small enough that the embedding does not dominate million-parameter models
)
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


# --- synthetic source ----------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSource:
    """A seeded sparse Markov chain of order ``order`` over ``alphabet`` symbols.

    Every context (the last ``order`` symbols) allows ``successors`` next symbols, drawn at
    random, with Dirichlet(``concentration``) weights. The chain is redrawn (with a derived
    seed) until its context graph is primitive (irreducible and aperiodic), so a unique
    stationary distribution π exists and every long sample has the same statistics. The
    entropy rate is exact: H = Σ_c π(c) · H(next | c).

    Parameters
    ----------
    alphabet, order, successors, concentration, seed
        As above. Defaults give H ≈ 1.3 nats/token against log 16 ≈ 2.77 for a unigram guess.
    """

    alphabet: int = 16
    order: int = 2
    successors: int = 6
    concentration: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.alphabet <= 256:
            raise ValueError(f"alphabet must be in [2, 256], got {self.alphabet}")
        if not 1 <= self.order or self.alphabet**self.order > 2**16:
            raise ValueError(f"order must be ≥ 1 with alphabet**order ≤ 65536, got {self.order}")
        if not 1 <= self.successors <= self.alphabet:
            raise ValueError(f"successors must be in [1, alphabet], got {self.successors}")
        if not self.concentration > 0:
            raise ValueError(f"concentration must be > 0, got {self.concentration}")

    @property
    def n_contexts(self) -> int:
        """Number of contexts, alphabet**order."""
        return self.alphabet**self.order

    @cached_property
    def _chain(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(successor symbols, their probabilities, stationary π over contexts)."""
        from scipy import sparse

        n, v, m = self.n_contexts, self.alphabet, self.successors
        for attempt in range(100):
            rng = np.random.default_rng([self.seed, attempt, 0x5EED])
            succ = np.sort(rng.random((n, v)).argsort(axis=1)[:, :m], axis=1)
            probs = rng.dirichlet(np.full(m, self.concentration), size=n)
            nxt = (np.arange(n)[:, None] * v) % n + succ  # context after emitting each successor
            graph = sparse.csr_matrix(
                (probs.ravel(), (np.repeat(np.arange(n), m), nxt.ravel())), (n, n)
            )
            if _is_primitive(graph):
                return succ, probs, _stationary(graph)
        raise RuntimeError("could not draw a primitive chain; use more successors")

    @property
    def stationary(self) -> np.ndarray:
        """Stationary distribution over contexts (index: the context as a base-alphabet number)."""
        return self._chain[2]

    @cached_property
    def entropy_rate_nats(self) -> float:
        """Exact entropy rate in nats per token."""
        _, probs, pi = self._chain
        return float(pi @ _entropy_rows(probs))

    def optimal_loss_nats(self, context_length: int) -> float:
        """Expected loss of the Bayes-optimal model on windows of ``context_length`` targets.

        A model that sees only the window cannot know the context of its first few targets:
        predicting x_1..x_T from x_0..x_{T-1} costs H(X_0..X_T) − H(X_0) in total, i.e.
        ``[H(π) − H(X_0) + (T + 1 − order) · H] / T`` per token, which tends to H as T grows.
        """
        t, k = context_length, self.order
        if t < k:
            raise ValueError(f"context_length must be ≥ order ({k}), got {t}")
        pi = self.stationary
        first = pi.reshape(self.alphabet, -1).sum(axis=1)  # marginal of the oldest symbol
        return (_entropy(pi) - _entropy(first) + (t + 1 - k) * self.entropy_rate_nats) / t

    def sample(self, n_tokens: int, *, stream_seed: int, n_streams: int = 1024) -> np.ndarray:
        """``n_tokens`` symbols (uint8) from ``n_streams`` independent stationary chains, joined.

        Chains start from π, so every position is stationary; the ``n_streams − 1`` joins are
        the only places the Markov dependence breaks (a fraction n_streams/n_tokens of targets).
        """
        succ, probs, pi = self._chain
        rng = np.random.default_rng([self.seed, stream_seed, 0xDA7A])
        n_streams = max(1, min(n_streams, n_tokens))
        length = -(-n_tokens // n_streams)
        cum = np.cumsum(probs, axis=1)
        cum[:, -1] = 1.0  # guard against rounding leaving u > cum[-1]
        ctx = rng.choice(self.n_contexts, size=n_streams, p=pi)
        out = np.empty((n_streams, length + self.order), dtype=np.uint8)
        # The first `order` symbols of each stream spell its starting context.
        c = ctx.copy()
        for i in range(self.order - 1, -1, -1):
            out[:, i] = c % self.alphabet
            c //= self.alphabet
        for t in range(length):
            if t % 4096 == 0:  # draw uniforms in blocks: bounded memory, same stream of numbers
                uniforms = rng.random((min(4096, length - t), n_streams))
            row = (uniforms[t % 4096][:, None] > cum[ctx]).sum(axis=1)
            symbol = succ[ctx, row]
            out[:, self.order + t] = symbol
            ctx = (ctx * self.alphabet) % self.n_contexts + symbol
        return out.ravel()[:n_tokens]


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def _is_primitive(graph: Any) -> bool:
    """Irreducible and aperiodic ⇔ some power of the adjacency matrix is all positive."""
    from scipy.sparse.csgraph import connected_components

    n_components, _ = connected_components(graph, directed=True, connection="strong")
    if n_components != 1:
        return False
    # Irreducible: aperiodic iff the gcd of cycle lengths is 1; checked as the gcd of
    # level differences along edges of a BFS tree (a standard O(edges) test).
    n = graph.shape[0]
    level = np.full(n, -1)
    level[0] = 0
    frontier = [0]
    indptr, indices = graph.indptr, graph.indices
    period = 0
    while frontier:
        nxt = []
        for u in frontier:
            for w in indices[indptr[u] : indptr[u + 1]]:
                if level[w] < 0:
                    level[w] = level[u] + 1
                    nxt.append(w)
                else:
                    period = math.gcd(period, int(level[u] + 1 - level[w]))
        frontier = nxt
    return period == 1


def _stationary(graph: Any) -> np.ndarray:
    """π with π = π P, by power iteration (converges: the chain is primitive)."""
    n = graph.shape[0]
    pt = graph.T.tocsr()
    pi = np.full(n, 1.0 / n)
    for _ in range(1_000_000):
        new = pt @ pi
        new /= new.sum()
        if np.abs(new - pi).sum() < 1e-15:
            return new
        pi = new
    raise RuntimeError("stationary distribution did not converge")


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


def _tokenize_text(
    train: bytes, val: bytes, tokenizer: str, vocab_size: int | None, out: Path
) -> tuple[np.ndarray, np.ndarray, int]:
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


def parse_synthetic(name: str, *, vocab_size: int | None = None, seed: int = 0) -> SyntheticSource:
    """The :class:`SyntheticSource` a corpus name such as ``"synthetic:order=1,alphabet=64"`` means.

    ``vocab_size``, when given, is the alphabet (it must agree with an ``alphabet=`` field).
    """
    fields: dict[str, Any] = {}
    _, _, spec = name.partition(":")
    types = {"alphabet": int, "order": int, "successors": int, "concentration": float}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in types:
            raise ValueError(
                f"bad synthetic field {item!r} in {name!r}; use key=value with keys {sorted(types)}"
            )
        try:
            fields[key] = types[key](value)
        except ValueError:
            raise ValueError(f"synthetic field {key} needs a number, got {value!r}") from None
    if vocab_size is not None:
        if fields.get("alphabet", vocab_size) != vocab_size:
            raise ValueError(f"vocab_size {vocab_size} contradicts alphabet={fields['alphabet']}")
        fields["alphabet"] = vocab_size
    return SyntheticSource(**fields, seed=seed)


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
        train_ids, val_ids, vocab = _tokenize_text(train, val, tokenizer, vocab_size, out)
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
