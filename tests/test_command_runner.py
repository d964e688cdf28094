"""Command runs through the sweep driver: losses back, failures, time limits, resume, kill, Ray.

The trainer is ``fake_command.py`` (a law-shaped loss, reported as JSON lines or on stdout) or
a one-line ``python -c`` command, so every test runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scalinglab.store import Store, load_store_runs
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.executors import run_sweep
from scalinglab.sweep.spec import parse_spec
from test_cli_sweep import _finished, _wait_for  # the SIGKILL test's helpers, shared

TESTS = Path(__file__).resolve().parent
FAKE = TESTS / "fake_command.py"
PY = sys.executable

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28  # Hoffmann et al. (2022), eq. 10


def chinchilla_loss(params: float, tokens: float) -> float:
    return E + A / params**ALPHA + B / tokens**BETA


def report_tokens(run) -> list[int]:
    """The token counts at which the fake reports: steps S/4, S/2, 3S/4 and S."""
    steps = json.loads(run.config)["steps"]
    return [(steps * i // 4) * 8 * 32 for i in (1, 2, 3, 4)]


def spec_text(command: list[str] | str, *, extra: str = "", params=(2e4, 5e4), workers=2) -> str:
    return f"""
[sweep]
name = "cmd"
[data]
vocab_size = 256
[model]
context_length = 32
[train]
batch_size = 8
command = {json.dumps(command)}
{extra}
[execution]
workers = {workers}
max_retries = 1
[design]
kind = "grid"
params = {json.dumps(list(params))}
tokens = [1e5]
"""


def fake(*more: str) -> list[str]:
    return [
        PY,
        str(FAKE),
        "--params={params}",
        "--tokens={tokens}",
        "--steps={steps}",
        "--run-dir={run_dir}",
        "--metrics={metrics_path}",
        *more,
    ]


def sweep(tmp_path: Path, text: str, **kwargs):
    plan = plan_sweep(parse_spec(text))
    events: list = []
    with Store(tmp_path / "s.db") as store:
        summary = run_sweep(plan, store, on_event=events.append, **kwargs)
        runs = store.runs()
        curves = {key: store.curve(key) for key in runs["key"]}
    return plan, summary, runs, curves, events


def test_json_lines_come_back_as_the_final_loss_and_the_curve(tmp_path):
    plan, summary, _, curves, events = sweep(tmp_path, spec_text(fake()))
    assert summary.complete and summary.finished == 2 and not summary.failed
    frame = load_store_runs(tmp_path / "s.db")
    for row in frame.itertuples():
        # The fake reports the law at N as the sweep declared it, so the store's loss is it.
        assert row.loss == pytest.approx(chinchilla_loss(row.params, row.tokens), rel=1e-6)
    for run in plan.runs:
        curve = curves[run.key]
        assert list(curve["tokens"]) == report_tokens(run)
        assert curve["flops_6nd"].iloc[-1] == pytest.approx(6.0 * run.params_total * run.tokens)
        logs = tmp_path / "s.db.runs" / run.key[:16]
        assert (logs / "attempt-1.stdout").exists() and (logs / "attempt-1.stderr").exists()
    assert any(e.kind == "progress" and e.point.get("val_loss") for e in events)


def test_a_named_regex_reads_the_losses_from_stdout(tmp_path):
    text = spec_text(fake("--stdout"), extra='loss_regex = "nanogpt"')
    plan, summary, runs, curves, _ = sweep(tmp_path, text)
    assert summary.complete
    for run in plan.runs:
        curve = curves[run.key]
        assert curve["val_loss"].notna().sum() == 4
        assert curve["train_loss"].iloc[-1] == pytest.approx(curve["val_loss"].iloc[-1] + 0.01)
        final = runs.set_index("key").loc[run.key, "loss"]
        assert final == pytest.approx(chinchilla_loss(run.params, run.tokens), rel=1e-5)


@pytest.mark.parametrize(
    ("code", "limit", "expected", "tail"),
    [
        (
            "import sys; print('boom: out of memory', file=sys.stderr); sys.exit(3)",
            None,
            "exited with status 3",
            "boom: out of memory",
        ),
        (
            "print('training finished, but I forgot to say the loss')",
            None,
            "reported no validation loss at the run's",
            "I forgot",
        ),
        (
            "import time; print('hanging', flush=True); time.sleep(60)",
            1.0,
            "ran past train.time_limit_s = 1 s and was killed",
            "hanging",
        ),
    ],
    ids=["non-zero-exit", "no-loss", "hang"],
)
def test_failed_commands_are_retried_then_recorded_with_their_log_tail_and_the_sweep_goes_on(
    tmp_path, code, limit, expected, tail
):
    # The smallest model runs the failing one-liner; the other one trains normally (the fake).
    dispatch = (
        "import runpy, sys\n"
        "if int(sys.argv[1]) < 30000:\n"
        f"    exec({code!r})\n"
        "else:\n"
        "    sys.argv = sys.argv[2:]\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    extra = f"time_limit_s = {limit}" if limit else ""
    text = spec_text([PY, "-c", dispatch, "{params}", *fake()[1:]], extra=extra)
    plan, summary, runs, _, events = sweep(tmp_path, text)
    small = min(plan.runs, key=lambda r: r.params)
    assert summary.failed == (small.key,) and summary.finished == 1, "the sweep went on"
    row = runs.set_index("key").loc[small.key]
    assert row["status"] == "failed" and row["attempts"] == 2, "retried max_retries = 1 time"
    assert expected in row["error"]
    assert tail in row["error"], "the log's tail is in the recorded error"
    kinds = [e.kind for e in events if e.run.key == small.key and e.kind != "progress"]
    assert kinds == ["started", "retry", "started", "failed"]


def test_spec_env_workdir_and_placeholders_reach_the_command(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import json, os, sys; "
        "open(os.environ['SCALINGLAB_METRICS_PATH'], 'a').write(json.dumps("
        "dict(tokens=int(sys.argv[1]), loss=3.0)) + '\\n'); "
        "open(os.path.join(sys.argv[2], 'seen.json'), 'w').write(json.dumps("
        "dict(cwd=os.getcwd(), env=os.environ['GREETING'], argv=sys.argv[3:])))"
    )
    command = [
        PY,
        "-c",
        code,
        "{tokens}",
        "{run_dir}",
        "{n_layer}",
        "{d_model}",
        "{n_head}",
        "{batch}",
        "{seq_len}",
        "{lr:g}",
        "{seed}",
        "{device}",
        "{vocab_size}",
    ]
    extra = f'workdir = "{work}"\nlr = 0.002\nenv = {{ GREETING = "hi {{d_model}}" }}'
    plan, summary, _, _, _ = sweep(tmp_path, spec_text(command, extra=extra, params=(2e4,)))
    assert summary.complete
    run = plan.runs[0]
    seen = json.loads((tmp_path / "s.db.runs" / run.key[:16] / "seen.json").read_text())
    s = run.shape
    assert seen["cwd"] == str(work) and seen["env"] == f"hi {s.d_model}"
    assert seen["argv"] == [str(v) for v in (s.n_layer, s.d_model, s.n_head, 8, 32)] + [
        "0.002",
        "0",
        "cpu",
        "256",
    ]


def test_a_restarted_run_resumes_from_its_checkpoint(tmp_path):
    """An attempt killed past its limit resumes from the command's checkpoint, and the curve
    holds every point once."""
    command = fake("--checkpoint-every=5", "--sleep={steps}", "--resume={resume_from}")
    # 390 steps, 1 s each... the fake sleeps `steps` seconds in total: killed at 2 s, then it
    # resumes (the second attempt is killed too, the third finishes within its 2 s).
    command[-2] = "--sleep=6"
    extra = 'resume_from = "{run_dir}/ckpt.txt"\ntime_limit_s = 2.5'
    text = spec_text(command, extra=extra, params=(2e4,))
    text = text.replace("max_retries = 1", "max_retries = 4")
    plan, summary, runs, curves, _ = sweep(tmp_path, text)
    assert summary.complete, runs["error"].tolist()
    run = plan.runs[0]
    starts = (tmp_path / "s.db.runs" / run.key[:16] / "starts.log").read_text().split("\n")
    assert starts[0] == "scratch" and starts[1].startswith("resume ") and int(starts[1][7:]) > 0
    curve = curves[run.key]
    assert list(curve["tokens"]) == report_tokens(run)


def test_without_resume_from_a_restart_starts_from_scratch(tmp_path):
    text = spec_text(fake("--sleep=3"), extra="time_limit_s = 1", params=(2e4,))
    plan, summary, _, _, _ = sweep(tmp_path, text)
    assert summary.failed
    folder = tmp_path / "s.db.runs" / plan.runs[0].key[:16]
    assert (folder / "starts.log").read_text() == "scratch\n", "the folder was emptied"
    assert (folder / "attempt-1.stdout").exists() and (folder / "attempt-2.stdout").exists()


def test_local_workers_get_their_own_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    code = (
        "import json, os, sys, time; time.sleep(0.5); "
        "open(os.environ['SCALINGLAB_METRICS_PATH'], 'a').write(json.dumps("
        "dict(tokens=int(sys.argv[1]), loss=3.0))"
        " + '\\n'); open(sys.argv[2] + '/gpus', 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    command = [PY, "-c", code, "{tokens}", "{run_dir}", "{device}"]
    text = spec_text(command, params=(2e4, 5e4, 1.2e5))
    text = text.replace("max_retries = 1", "max_retries = 1\ngpus_per_run = 2")
    plan, summary, _, _, _ = sweep(tmp_path, text)
    assert summary.complete
    seen = [(tmp_path / "s.db.runs" / r.key[:16] / "gpus").read_text() for r in plan.runs]
    assert set(seen) <= {"0,1", "2,3"} and len(set(seen)) == 2
    assert json.loads(plan.runs[0].config)["device"] == "cuda"


def test_too_few_gpus_is_refused_naming_the_key(tmp_path, monkeypatch):
    from scalinglab.sweep.spec import SpecError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    text = spec_text(fake(), params=(2e4,)).replace("max_retries = 1", "gpus_per_run = 1")
    with pytest.raises(SpecError, match=r"execution\.gpus_per_run: 2 worker"):
        sweep(tmp_path, text)


# --- the driver killed while commands run ----------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
def test_sigkill_of_the_driver_while_commands_run_loses_and_repeats_nothing(tmp_path):
    spec = tmp_path / "kill.toml"
    spec.write_text(spec_text(fake("--sleep=1.5"), params=(2e4, 5e4, 1.2e5, 3e5)))
    store = tmp_path / "kill.db"
    args = [
        PY,
        "-c",
        "from scalinglab.cli import main; main()",
        "sweep",
        "run",
        str(spec),
        "--store",
        str(store),
        "--workers",
        "2",
        "--json",
    ]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(_finished(store)) >= 1)
    runs_root = tmp_path / "kill.db.runs"
    # Kill while the next commands are in flight (they started as soon as a slot freed).
    _wait_for(lambda: sum(1 for _ in runs_root.glob("*/pid-*")) >= 3)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    kept = _finished(store)
    pids = [int(p.name[4:]) for p in runs_root.glob("*/pid-*")]
    _wait_for(lambda: not any(_alive(pid) for pid in pids), timeout_s=20)  # died with it
    final = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["complete"] and summary["already_finished"] == len(kept)
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT count(*), count(DISTINCT key) FROM runs").fetchone() == (4, 4)
    per_run = conn.execute("SELECT count(*) FROM curves GROUP BY key").fetchall()
    assert per_run == [(4,)] * 4, "each curve recorded exactly once"
    for key, finished_at in kept.items():
        got = conn.execute("SELECT finished_at FROM runs WHERE key = ?", (key,)).fetchone()
        assert got == (finished_at,), "a finished run was recorded again"
        # ... and never launched again.
        assert (runs_root / key[:16] / "starts.log").read_text() == "scratch\n"
    conn.close()


# --- Ray ----------------------------------------------------------------------------------


@pytest.fixture
def ray_tmp():
    """A short temporary folder for a private Ray (its socket paths must fit 107 bytes)."""
    import shutil

    from scalinglab.sweep.executors import default_ray_temp_dir

    folder = default_ray_temp_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_ray_runs_commands_with_the_resources_they_declare(tmp_path, ray_tmp, monkeypatch):
    ray = pytest.importorskip("ray")
    # A private Ray told this machine has two GPUs; Ray gives each task one of them.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    code = (
        "import json, os, sys, time; time.sleep(1); "
        "open(os.environ['SCALINGLAB_METRICS_PATH'], 'a').write(json.dumps("
        "dict(tokens=int(sys.argv[1]), loss=3.0)) + '\\n'); "
        "open(sys.argv[2] + '/gpus', 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', '?'))"
    )
    text = spec_text([PY, "-c", code, "{tokens}", "{run_dir}"], params=(2e4, 5e4, 1.2e5))
    text = text.replace(
        "max_retries = 1",
        'max_retries = 1\ngpus_per_run = 1\ncpus_per_run = 0.5\nmemory_per_run = "64MiB"',
    )
    plan, summary, _, _, _ = sweep(
        tmp_path, text, executor="ray", workers=2, threads=1, ray_temp_dir=ray_tmp
    )
    assert summary.complete and summary.executor == "ray"
    assert not ray.is_initialized(), "the private Ray instance is shut down"
    seen = [(tmp_path / "s.db.runs" / r.key[:16] / "gpus").read_text() for r in plan.runs]
    assert set(seen) <= {"0", "1"}, seen


# --- the real nanoGPT ----------------------------------------------------------------------

REPO = TESTS.parent


@pytest.mark.slow
def test_the_nanogpt_example_trains_the_real_nanogpt_into_a_store(tmp_path):
    """A 2-run version of examples/nanogpt_sweep.toml: nanoGPT's own train.py, 100 and 200
    iterations, through the command runner, into a store the fit reads."""
    import importlib.util

    anchor = REPO.parent / "shared" / "anchors" / "nanoGPT"
    if not (anchor / "train.py").exists():
        pytest.skip("the nanoGPT anchor is not in ../shared/anchors")
    module_spec = importlib.util.spec_from_file_location(
        "nanogpt_scratch", REPO / "scripts" / "nanogpt_scratch.py"
    )
    scratch_module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(scratch_module)
    scratch = scratch_module.make_scratch(tmp_path / "nanogpt")
    text = (REPO / "examples" / "nanogpt_sweep.toml").read_text()
    for old, new in (
        ('workdir = "/tmp/scalinglab-nanogpt"', f'workdir = "{scratch}"'),
        ("params = [1e5, 4e5]", "params = [1e5]"),
        ("tokens = [153600, 307200]", "tokens = [76800, 153600]"),
    ):
        assert old in text
        text = text.replace(old, new)
    spec = tmp_path / "nanogpt.toml"
    spec.write_text(text)
    store = tmp_path / "n.db"
    cli = [PY, "-c", "from scalinglab.cli import main; main()"]
    done = subprocess.run(
        [*cli, "sweep", "run", str(spec), "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["finished"] == 2
    frame = load_store_runs(store).sort_values("tokens")  # what `scalinglab fit` reads
    # Char-level losses in nats: below a uniform guess over 65 characters, and falling with D.
    assert frame["loss"].between(1.5, 4.17).all()
    assert frame["loss"].iloc[1] < frame["loss"].iloc[0]
    with Store(store, readonly=True) as opened:
        runs = opened.runs().set_index("key")
        for key in runs.index:
            curve = opened.curve(key)
            steps = json.loads(runs.loc[key, "config_json"])["steps"]
            evaluated = curve.dropna(subset=["val_loss"])["tokens"] // (12 * 64)
            assert list(evaluated) == list(range(0, steps + 1, 100))
            # nanoGPT counts its parameters without the position table: ours agree.
            log = (store.with_name("n.db.runs") / key[:16] / "attempt-1.stdout").read_text()
            n_millions = float(log.split("number of parameters: ")[1].split("M")[0])
            ours = runs.loc[key, "params_total"] - 64 * runs.loc[key, "d_model"]
            assert n_millions == pytest.approx(ours / 1e6, abs=0.005)
