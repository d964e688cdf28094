"""``scalinglab train``: help, one-line errors with exit code 2, JSON and table output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.counting import TransformerShape, count_params, flops_per_token

runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point, as a user runs it (one-line errors, exit codes)."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


def test_help_lists_the_options():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--params", "--tokens", "--corpus", "--schedule", "--device", "--json"):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--params", "1e5", "--tokens", "1e6", "--schedule", "linear"], "--schedule"),
        (["--params", "1e5", "--tokens", "1e6", "--device", "tpu"], "--device"),
        (["--params", "-3", "--tokens", "1e6"], "--params"),
        (["--params", "1e5", "--tokens", "0"], "--tokens"),
        (["--params", "1e5", "--tokens", "1e6", "--branch", "1e5"], "--branch"),
        (["--params", "1e5", "--layers", "2", "--tokens", "1e6"], "--layers"),
        (["--params", "1e5", "--tokens", "1e6", "--precision", "fp8"], "--precision"),
        (["--params", "1e5", "--tokens", "1e6", "--corpus", "/no/such/file.txt"], "--corpus"),
    ],
)
def test_bad_input_fails_naming_the_option(args, names):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert names in result.output


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--batch-size", "0"], "error: --batch-size: batch_size must be ≥ 1, got 0"),
        (["--schedule", "wsd", "--cooldown", "1.5"], "error: --cooldown: cooldown_fraction"),
        (["--eval-interval", "0"], "error: --eval-interval: eval_interval_tokens must be ≥ 1"),
        (["--threads", "0"], "error: --threads: threads must be ≥ 1, got 0"),
        (["--context", "0"], "error: --context: context_length must be a positive integer"),
        (["--tokens", "inf"], "error: --tokens must be a finite number, got inf"),
    ],
)
def test_a_bad_trainconfig_field_is_named_by_its_option(args, line, monkeypatch):
    """TrainConfig checks the options; its error's field maps to the option, before any corpus."""
    import scalinglab.train.corpus as corpus

    def no_corpus(*args, **kwargs):
        raise AssertionError("the corpus was built before the options were checked")

    monkeypatch.setattr(corpus, "load_corpus", no_corpus)
    result = runner.invoke(app, ["train", "-N", "1e5", "-D", "1e6", *args])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith(line), result.output


def test_bad_input_is_one_line_without_traceback():
    proc = run_cli("train", "--params", "1e5", "--tokens", "1e6", "--corpus", "/no/such/file.txt")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--corpus" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_json_reports_the_run(shared_data):
    corpus = str(shared_data / "tinyshakespeare" / "input.txt")
    args = ["train", "--params", "3e4", "--tokens", "3e4", "--corpus", corpus]
    args += ["--tokenizer", "char", "--context", "32", "--batch-size", "8", "--threads", "1"]
    result = runner.invoke(app, [*args, "--eval-tokens", "2048", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("loss", "params", "non_embedding_params", "tokens", "flops", "tokens_per_s", "mfu"):
        assert key in data
    s = data["shape"]
    shape = TransformerShape(s["n_layer"], s["d_model"], s["n_head"], 65, 32)
    assert data["params"] == count_params(shape).total
    assert data["non_embedding_params"] == count_params(shape).non_embedding
    assert data["flops_6nd"] == 6 * data["params"] * data["tokens"]
    assert data["flops"] == flops_per_token(shape).per_operation * data["tokens"]
    assert 0 < data["loss"] < 4.2  # ln 65 ≈ 4.17 is the uniform guess
    assert 0 < data["mfu"] < 1


@pytest.mark.slow
def test_table_output_with_a_wsd_branch(shared_data):
    corpus = str(shared_data / "tinyshakespeare" / "input.txt")
    args = ["train", "--layers", "1", "--d-model", "32", "--heads", "2", "--tokens", "2e4"]
    args += ["--corpus", corpus, "--tokenizer", "char", "--context", "32", "--batch-size", "8"]
    args += ["--schedule", "wsd", "--branch", "8e3", "--threads", "1", "--eval-tokens", "2048"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "validation loss" in result.output
    assert "WSD cooldowns" in result.output


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path, monkeypatch):
    import scalinglab.train.trainer as trainer
    from _main import one_line_error, run_main

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(trainer, "_train", no_training)
    blocker = tmp_path / "ckpt"
    blocker.write_text("a file, not a folder")
    args = ["train", "-N", "2e4", "-D", "1e4", "--corpus", "synthetic", "--context", "16"]
    line = one_line_error(run_main(*args, "--checkpoint-dir", blocker))
    assert line.startswith("error: --checkpoint-dir:") and "not a folder" in line
    assert blocker.read_text() == "a file, not a folder"
