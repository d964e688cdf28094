"""Corpora: nanoGPT's char split of tinyshakespeare, byte/BPE tokenizers, folders, stdlib,
the cache, and the synthetic source's exact entropy rate."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from scalinglab.train.corpus import SyntheticSource, load_corpus, stdlib_files


@pytest.fixture()
def shakespeare(shared_data):
    return shared_data / "tinyshakespeare" / "input.txt"


def test_char_split_is_nanogpts(shakespeare, tmp_path):
    c = load_corpus(str(shakespeare), tokenizer="char", cache_dir=tmp_path)
    # tinyshakespeare/SOURCE.md: 65 distinct characters; nanoGPT's split 1 003 854 / 111 540.
    assert c.vocab_size == 65
    assert (len(c.train_tokens), len(c.val_tokens)) == (1_003_854, 111_540)
    assert isinstance(c.train_tokens, np.memmap)
    vocab = json.loads((c.path / "vocab.json").read_text())
    text = "".join(vocab[i] for i in c.train_tokens[:13])
    assert text == "First Citizen"
    assert c.entropy_rate_nats is None


def test_byte_tokens_are_the_file_bytes(shakespeare, tmp_path):
    c = load_corpus(str(shakespeare), cache_dir=tmp_path)
    raw = shakespeare.read_bytes()
    assert c.vocab_size == 256
    assert bytes(c.train_tokens[:100]) == raw[:100]
    assert bytes(c.val_tokens[-50:]) == raw[-50:]
    assert len(c.train_tokens) + len(c.val_tokens) == len(raw)


def test_cache_is_built_once(shakespeare, tmp_path):
    first = load_corpus(str(shakespeare), cache_dir=tmp_path)
    stamp = (first.path / "train.bin").stat().st_mtime_ns
    second = load_corpus(str(shakespeare), cache_dir=tmp_path)
    assert second.path == first.path
    assert (second.path / "train.bin").stat().st_mtime_ns == stamp
    # No temporary folders are left behind.
    assert [p.name for p in (tmp_path / "corpora").iterdir()] == [first.path.name]


def test_cache_dir_defaults_to_the_environment(shakespeare, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "env-cache"))
    c = load_corpus(str(shakespeare))
    assert c.path.is_relative_to(tmp_path / "env-cache")


def test_folder_split_keeps_whole_documents(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    names = [f"doc{i:02d}.txt" for i in range(40)]
    for i, name in enumerate(names):
        (folder / name).write_text(f"<{i}>" + "x" * (10 + i))
    (folder / "image.bin").write_bytes(b"\x00\x01binary")  # skipped: not text
    c = load_corpus(str(folder), cache_dir=tmp_path / "cache")
    val_names = [n for n in names if zlib.crc32(n.encode()) % 100 < 10]
    assert val_names  # the rule picks some documents for validation
    expected_val = b"".join((folder / n).read_bytes() for n in val_names)
    assert bytes(c.val_tokens) == expected_val
    assert len(c.train_tokens) + len(c.val_tokens) == sum(
        (folder / n).stat().st_size for n in names
    )


def test_bpe_round_trips_and_respects_the_vocabulary(shakespeare, tmp_path):
    from tokenizers import Tokenizer

    small = tmp_path / "small.txt"
    small.write_bytes(shakespeare.read_bytes()[:200_000])
    c = load_corpus(str(small), tokenizer="bpe", vocab_size=400, cache_dir=tmp_path / "cache")
    assert c.vocab_size <= 400
    assert int(c.train_tokens.max()) < c.vocab_size
    tok = Tokenizer.from_file(str(c.path / "tokenizer.json"))
    text = small.read_text()
    cut = int(len(text) * 0.9)
    assert tok.decode(c.val_tokens.tolist()) == text[cut:]
    # Merges compress: fewer tokens than bytes.
    assert len(c.train_tokens) < 0.8 * cut


def test_stdlib_corpus_is_sorted_and_excludes_tests():
    root, files = stdlib_files()
    rel = [f.relative_to(root) for f in files]
    assert rel == sorted(rel)
    assert not any({"test", "tests", "site-packages"} & set(p.parts) for p in rel)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    assert 11 <= size_mb <= 30  # the size the design asks for


def test_stdlib_byte_corpus_loads(tmp_path):
    c = load_corpus("stdlib", cache_dir=tmp_path)
    n = len(c.train_tokens) + len(c.val_tokens)
    assert 11e6 <= n <= 30e6
    assert 0.05 < len(c.val_tokens) / n < 0.2


def test_bad_requests_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="tokenizer"):
        load_corpus("stdlib", tokenizer="wordpiece", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="existing path"):
        load_corpus(str(tmp_path / "nope.txt"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="symbols"):
        load_corpus("synthetic", tokenizer="char", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="256"):
        load_corpus("stdlib", vocab_size=512, cache_dir=tmp_path)


# --- synthetic source --------------------------------------------------------------------------


def _plugin_entropy(x: np.ndarray, source: SyntheticSource) -> float:
    """Empirical conditional entropy H(next | previous `order` symbols) from counts."""
    v, k = source.alphabet, source.order
    ctx = np.zeros(len(x) - k, dtype=np.int64)
    for i in range(k):
        ctx = ctx * v + x[i : len(x) - k + i]
    joint = np.bincount(ctx * v + x[k:], minlength=v ** (k + 1)).reshape(-1, v).astype(float)
    rows = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(joint > 0, joint / rows * np.log(joint / rows), 0.0).sum(axis=1)
    return float((rows[:, 0] / rows.sum()) @ h)


def test_synthetic_entropy_rate_matches_samples():
    source = SyntheticSource(seed=3)
    x = source.sample(2_000_000, stream_seed=1, n_streams=64)
    assert _plugin_entropy(x, source) == pytest.approx(source.entropy_rate_nats, rel=0.005)
    # Stationarity: context frequencies match π.
    ctx = x[:-1].astype(np.int64) * source.alphabet + x[1:]
    freq = np.bincount(ctx, minlength=source.n_contexts) / len(ctx)
    assert np.abs(freq - source.stationary).sum() < 0.02


def test_synthetic_source_is_sparse_and_well_defined():
    source = SyntheticSource()
    pi = source.stationary
    assert pi.sum() == pytest.approx(1.0) and (pi > 0).all()
    # Far below a unigram model's log(alphabet), and at most log(successors).
    assert 0.3 * math.log(16) < source.entropy_rate_nats < math.log(source.successors)
    # The window-optimal loss exceeds H and tends to it.
    losses = [source.optimal_loss_nats(t) for t in (4, 64, 1024)]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] == pytest.approx(source.entropy_rate_nats, rel=1e-3)
    assert losses[-1] > source.entropy_rate_nats
    # Same seed, same source; another seed, another source.
    assert SyntheticSource().entropy_rate_nats == source.entropy_rate_nats
    assert SyntheticSource(seed=1).entropy_rate_nats != source.entropy_rate_nats


@pytest.mark.slow
def test_synthetic_corpus_loads_with_its_entropy(tmp_path):
    c = load_corpus("synthetic", cache_dir=tmp_path)
    assert c.tokenizer == "symbol" and c.vocab_size == 16
    assert c.entropy_rate_nats == pytest.approx(SyntheticSource().entropy_rate_nats)
    assert len(c.train_tokens) == 1 << 24 and len(c.val_tokens) == 1 << 20
    assert int(c.train_tokens.max()) < 16
