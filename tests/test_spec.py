"""The sweep spec: TOML in, validated values out, one clear line naming the key otherwise."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalinglab.sweep.spec import SpecError, load_spec, parse_spec

MINIMAL = """
[design]
kind = "isoflop"
flops = [1e12, 1e13]
"""


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    message = str(info.value)
    assert "\n" not in message, "an error is one line"
    return message


def test_minimal_spec_takes_documented_defaults():
    spec = parse_spec(MINIMAL, default_name="mini")
    assert spec.name == "mini"
    assert spec.seed == 0
    assert spec.store == "scalinglab.db"
    assert spec.data.corpus == "stdlib" and spec.data.tokenizer == "byte"
    assert spec.model.param_basis == "non_embedding" and spec.model.flops_method == "6nd"
    assert spec.budget.on_over == "refuse" and spec.budget.flops is None
    assert spec.design.compute_levels() == (1e12, 1e13)
    assert spec.design.sizes_per_level == 5 and spec.design.tokens_per_param == 20.0
    assert spec.train.options() == {}, "unset options keep the trainer's defaults"


def test_full_spec_round_trips_to_plain_dict():
    spec = parse_spec(
        """
        [sweep]
        name = "s"
        seed = 3
        [data]
        corpus = "synthetic"
        [model]
        context_length = 32
        param_basis = "total"
        flops_method = "per_operation"
        positional = "rotary"
        tied_embeddings = false
        aspect_min = 16
        [train]
        batch_size = 8
        lr = 2e-3
        warmup_tokens = 1024
        [budget]
        flops = 1e15
        on_over = "trim"
        [execution]
        workers = 2
        max_retries = 1
        [design]
        kind = "grid"
        params = [2e5, 1e5]
        tokens = [1e6, 3e6]
        """
    )
    assert spec.design.params == (1e5, 2e5), "lists are sorted"
    assert spec.model.shape_options() == {
        "tied_embeddings": False,
        "positional": "rotary",
        "aspect_min": 16.0,
    }
    assert spec.train.options() == {
        "batch_size": 8,
        "lr": 2e-3,
        "warmup_tokens": 1024,
    }
    d = spec.to_dict()
    assert d["design"]["tokens"] == [1e6, 3e6] and d["seed"] == 3


def test_log_spaced_levels():
    spec = parse_spec(
        '[design]\nkind = "isoflop"\nflops_min = 1e12\nflops_max = 1e14\nlevels = 3\n'
    )
    levels = spec.design.compute_levels()
    assert [math.log10(x) for x in levels] == pytest.approx([12, 13, 14])


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[sweep]\nnmae = 'x'\n" + MINIMAL, "sweep.nmae", "did you mean 'name'"),
        ("[trian]\nlr = 1\n" + MINIMAL, "trian", "did you mean 'train'"),
        ("[train]\nlrr = 1e-3\n" + MINIMAL, "train.lrr", "allowed:"),
        ("[budget]\nflops = -1e15\n" + MINIMAL, "budget.flops", "must be > 0"),
        ("[budget]\nwall_clock_s = 0\n" + MINIMAL, "budget.wall_clock_s", "must be > 0"),
        ("[budget]\nflops = 1e12\nwall_clock_s = 60\n" + MINIMAL, "budget", "not both"),
        ("[budget]\non_over = 'ignore'\n" + MINIMAL, "budget.on_over", "'refuse', 'trim'"),
        ("[model]\nparam_basis = 'kaplan'\n" + MINIMAL, "model.param_basis", "non_embedding"),
        ("[model]\ncontext_length = 0\n" + MINIMAL, "model.context_length", "≥ 2"),
        ("[model]\naspect_min = 0\n" + MINIMAL, "model.aspect_min", "> 0"),
        ("[train]\nbatch_size = 2.5\n" + MINIMAL, "train.batch_size", "whole number"),
        ("[train]\nmin_lr_ratio = 1.5\n" + MINIMAL, "train.min_lr_ratio", "[0, 1]"),
        ("[execution]\nworkers = 0\n" + MINIMAL, "execution.workers", "≥ 1"),
        ("[design]\nkind = 'random'\n", "design.kind", "'isoflop', 'grid', 'wsd'"),
        ("[design]\nkind = 'isoflop'\n", "design.flops_min", "missing"),
        (
            "[design]\nkind = 'isoflop'\nflops = [1e12]\nflops_min = 1e12\n",
            "design.flops",
            "not both",
        ),
        ("[design]\nkind = 'isoflop'\nflops = [1e12, -3]\n", "design.flops[1]", "> 0"),
        ("[design]\nkind = 'isoflop'\nflops = [1e12, 1e12]\n", "design.flops", "repeated"),
        (
            "[design]\nkind = 'isoflop'\nflops = [1e12]\nsizes_per_level = true\n",
            "design.sizes_per_level",
            "whole number",
        ),
        ("[design]\nkind = 'grid'\nparams = [1e5]\n", "design.tokens", "missing"),
        ("[design]\nkind = 'grid'\nparams = [1e5, 0]\ntokens = [1e6]\n", "design.params[1]", "> 0"),
        (
            "[design]\nkind = 'grid'\nparams = [1e5]\ntokens = [1e6]\nlevels = 3\n",
            "design.levels",
            "unknown key",
        ),
        (
            "[design]\nkind = 'wsd'\nparams = [1e5]\ntokens = 1e6\n",
            "design.branch_tokens",
            "missing",
        ),
        (
            "[design]\nkind = 'wsd'\nparams = [1e5]\ntokens = 1e6\nbranch_tokens = [2e6]\n",
            "design.branch_tokens",
            "< design.tokens",
        ),
        (
            "[design]\nkind = 'wsd'\nparams = [1e5]\ntokens = 1e6\nbranch_fractions = [1.0]\n",
            "design.branch_fractions",
            "(0, 1)",
        ),
        ("[design]\nkind = 'points'\npoints = [[1e5]]\n", "design.points[0]", "[params, tokens"),
        (
            "[design]\nkind = 'points'\npoints = [[1e5, 1e6, 3e5]]\n",
            "design.points[0][2]",
            "non-empty list",
        ),
        (
            "[design]\nkind = 'points'\npoints = [[1e5, 1e6, [2e5, 1e6]]]\n",
            "design.points[0][2]",
            "< the run's tokens",
        ),
        (
            "[design]\nkind = 'points'\npoints = [[1e5, 1e6, [2e5]], [1e5, 1e6, [2e5]]]\n",
            "design.points",
            "repeated",
        ),
        ("[sweep]\nname = 'x'\n", "design", "missing"),
        ("design = 3\n", "design", "must be a table"),
    ],
)
def test_bad_specs_name_the_key(text, key, fragment):
    message = _error(text)
    assert message.startswith(f"{key}:"), message
    assert fragment in message, message


def test_not_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in _error("[design\nkind=")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.toml")


def test_load_spec_names_the_sweep_after_the_file(tmp_path):
    path = tmp_path / "my_sweep.toml"
    path.write_text(MINIMAL)
    assert load_spec(path).name == "my_sweep"


@given(st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
def test_any_unknown_train_key_is_named(name):
    allowed = {
        "batch_size", "lr", "min_lr_ratio", "warmup_tokens", "schedule", "cooldown_fraction",
        "weight_decay", "grad_clip", "eval_interval_tokens", "eval_tokens", "device",
        "precision",
    }  # fmt: skip
    if name in allowed:
        return
    with pytest.raises(SpecError) as info:
        parse_spec(f"[train]\n{name} = 1\n{MINIMAL}")
    assert str(info.value).startswith(f"train.{name}: unknown key")


def test_a_binary_spec_is_one_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00[sweep]\x80")
    with pytest.raises(SpecError, match=r"bin\.toml: not a TOML spec \(not UTF-8 text\)"):
        load_spec(path)


def test_a_corpus_that_does_not_exist_is_refused_at_plan_time(tmp_path) -> None:
    text = '[data]\ncorpus = "{}"\n[design]\nkind = "grid"\nparams = [2e4]\ntokens = [1e5]\n'
    with pytest.raises(SpecError, match=r"data\.corpus: no such file") as caught:
        parse_spec(text.format(tmp_path / "absent.txt"))
    assert caught.value.field == "data.corpus"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello")
    assert parse_spec(text.format(corpus)).data.corpus == str(corpus)


@pytest.mark.parametrize(
    ("design", "key"),
    [
        ('kind = "isoflop"\nflops = [1e12]\nsizes_per_level = 1000000', "design.sizes_per_level"),
        ('kind = "isoflop"\nflops_min = 1e12\nflops_max = 1e15\nlevels = 100000', "design"),
        (
            'kind = "grid"\nparams = [{}]\ntokens = [1e5]'.format(
                ", ".join(str(1e4 + i) for i in range(100_000))
            ),
            "design.params",
        ),
        (
            'kind = "grid"\nparams = [{}]\ntokens = [{}]'.format(
                ", ".join(str(1e4 + i) for i in range(200)),
                ", ".join(str(1e5 + i) for i in range(200)),
            ),
            "design.params",
        ),
    ],
)
def test_designs_too_large_are_refused_before_they_are_built(design, key) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(f"[design]\n{design}\n")
    assert caught.value.field.startswith(key) and "at most" in str(caught.value)
