"""The command-run spec: keys, placeholders, loss patterns, run configs; errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.command import LOSS_PATTERNS, PLACEHOLDERS, placeholder_values, render
from scalinglab.sweep.spec import parse_spec
from scalinglab.sweep.spec_values import SpecError

SPEC = """
[sweep]
name = "c"
seed = 3
[data]
vocab_size = 65
[model]
context_length = 64
[train]
batch_size = 12
lr = 1e-3
command = "python train.py --n_layer={n_layer} --n_embd={d_model} --iters={steps} --out={run_dir}"
[execution]
workers = 2
[design]
kind = "grid"
params = [1e5, 4e5]
tokens = [153600, 307200]
"""


def with_lines(*lines: str, section: str = "[train]") -> str:
    return SPEC.replace(section, "\n".join((section, *lines)), 1)


def test_a_command_spec_plans_the_same_design_with_its_own_configs():
    spec = parse_spec(SPEC)
    assert spec.command is not None and spec.command.argv[0] == "python"
    plan = plan_sweep(spec)
    assert len(plan.runs) == 4 and len({r.key for r in plan.runs}) == 4
    for run in plan.runs:
        config = json.loads(run.config)
        assert config["runner"] == "command" and config["device"] == "cpu"
        assert config["steps"] * 12 * 64 == run.tokens
        assert run.flops == pytest.approx(6.0 * run.params * run.tokens)  # as built-in runs
    # The key changes with the command, not with the time limit.
    other = plan_sweep(parse_spec(SPEC.replace("--out", "--dir")))
    limited = plan_sweep(parse_spec(with_lines("time_limit_s = 60")))
    assert {r.key for r in other.runs}.isdisjoint(r.key for r in plan.runs)
    assert {r.key for r in limited.runs} == {r.key for r in plan.runs}


def test_placeholders_render_per_run():
    run = plan_sweep(parse_spec(SPEC)).runs[0]
    config = json.loads(run.config)
    values = placeholder_values(config, run_dir="/runs/x")
    assert set(values) == set(PLACEHOLDERS)
    argv = render(list(parse_spec(SPEC).command.argv), values)
    s = run.shape
    assert argv[2:] == [
        f"--n_layer={s.n_layer}",
        f"--n_embd={s.d_model}",
        f"--iters={config['steps']}",
        "--out=/runs/x",
    ]
    assert values["seed"] == 3 and values["metrics_path"] == "/runs/x/metrics.jsonl"
    assert render(["{lr:.1e}", "{{literal}}"], values) == ["1.0e-03", "{literal}"]


def test_the_nanogpt_patterns_read_its_lines():
    import re

    evaluation, log = (re.compile(p) for p in LOSS_PATTERNS["nanogpt"])
    m = evaluation.search("step 250: train loss 1.9612, val loss 2.0701")
    assert m.group("step", "train_loss", "val_loss") == ("250", "1.9612", "2.0701")
    m = log.search("iter 251: loss 1.9973, time 33.20ms, mfu 0.31%")
    assert m.group("step", "train_loss") == ("251", "1.9973")


@pytest.mark.parametrize(
    ("lines", "section", "key", "message"),
    [
        (["schedule = 'wsd'"], "[train]", "train.schedule", "option of scalinglab's own trainer"),
        (['command = "python t.py --x={width}"'], "[train]", "train.command", "{width}"),
        (['command = ["python", 3]'], "[train]", "train.command", "list of strings"),
        (["command = 'python \"unclosed'"], "[train]", "train.command", "cannot be split"),
        (['loss_regex = "loss ([0-9.]+)"'], "[train]", "train.loss_regex", "(?P<step>"),
        (['loss_regex = ["step (?P<step>\\\\d+)"]'], "[train]", "train.loss_regex[0]", "val_loss"),
        (['loss_regex = "(unclosed"'], "[train]", "train.loss_regex", "not a regular expression"),
        (['resume_args = ["--resume"]'], "[train]", "train.resume_args", "train.resume_from"),
        (["time_limit_s = -1"], "[train]", "train.time_limit_s", "must be > 0"),
        (["env = { A = true }"], "[train]", "train.env.A", "string or a number"),
        (['corpus = "stdlib"'], "[data]", "data.corpus", "reads its own data"),
        (["gpus_per_run = -1"], "[execution]", "execution.gpus_per_run", "≥ 0"),
        (['memory_per_run = "lots"'], "[execution]", "execution.memory_per_run", "byte count"),
        (["cpus_per_run = 0"], "[execution]", "execution.cpus_per_run", "must be > 0"),
    ],
)
def test_bad_command_specs_name_the_key(lines, section, key, message):
    text = with_lines(*lines, section=section)
    if lines[0].startswith("command"):  # replaces the command rather than adding one
        text = text.replace(SPEC.split("[train]")[1].splitlines()[3] + "\n", "", 1)
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    assert caught.value.field == key and str(caught.value).startswith(key)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            'kind = "grid"\nparams = [1e5, 4e5]\ntokens = [153600, 307200]',
            'kind = "wsd"\nparams = [1e5]\ntokens = 307200\nbranch_fractions = [0.5]',
            "design.kind",
        ),
        (
            'kind = "grid"\nparams = [1e5, 4e5]\ntokens = [153600, 307200]',
            'kind = "points"\npoints = [[1e5, 307200, [76800]]]',
            "design.points",
        ),
        ("[execution]", "[budget]\nwall_clock_s = 60\n[execution]", "budget.wall_clock_s"),
        ("batch_size = 12\n", "", "train.batch_size"),
        ("vocab_size = 65\n", "", "data.vocab_size"),
        ("lr = 1e-3\n", "", "train.lr"),
        ("--out={run_dir}", "--ckpt={resume_from}", "train.command"),
    ],
)
def test_what_a_command_run_needs_of_the_rest_of_the_spec(old, new, key):
    text = SPEC.replace(old, new, 1)
    if key == "train.lr":
        text = text.replace("--out={run_dir}", "--lr={lr}")
    with pytest.raises(SpecError) as caught:
        plan_sweep(parse_spec(text))
    assert caught.value.field == key


def test_command_keys_without_a_command_are_refused():
    text = SPEC.replace(SPEC.split("[train]")[1].splitlines()[3], "time_limit_s = 5")
    with pytest.raises(SpecError, match=r"train\.time_limit_s: applies to command runs only"):
        parse_spec(text.replace("vocab_size = 65", "vocab_size = 256"))


def test_memory_takes_units():
    text = with_lines('memory_per_run = "512MiB"', "cpus_per_run = 0.5", section="[execution]")
    execution = parse_spec(text).execution
    assert execution.memory_per_run == 512 * 2**20 and execution.cpus_per_run == 0.5
    plain = parse_spec(with_lines("memory_per_run = 4e9", section="[execution]"))
    assert plain.execution.memory_per_run == 4_000_000_000


def test_the_cli_reports_a_bad_command_in_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(with_lines("eval_tokens = 4096"))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from scalinglab.cli import main; main()",
            "sweep",
            "plan",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "train.eval_tokens: is an option of scalinglab's own trainer" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
