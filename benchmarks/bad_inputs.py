"""Throw a catalogue of bad inputs at every command and the Python API; count the outcomes.

Run: ``PYTHONPATH=src python benchmarks/bad_inputs.py [--verbose]``. Each case runs in this
process (the console script's ``main`` with its own argv, or one API call) under a 60 s alarm,
and is sorted into the outcomes of issue 13: a clear line (exit 2, one line on stderr naming
what the case expects), a traceback (any other exception), silent wrong (exit 0 where a
refusal was due), data loss (a protected file changed), hang (the alarm), misleading (exit 2
but the line does not name the expected thing, or more than one line).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import sqlite3
import stat
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHINCHILLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch"


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_cli(args: list[str]) -> tuple[int, str, str]:
    from scalinglab.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["scalinglab", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


def classify(
    action: Callable[[], tuple[int, str, str]], expect: str | None, protect: list[Path]
) -> tuple[str, str]:
    before = {p: _sha(p) for p in protect}
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        code, _out, err = action()
    except Hang:
        return "hang", ""
    except Exception as exc:
        signal.alarm(0)
        from scalinglab.errors import ScalingLabError

        if isinstance(exc, ScalingLabError):  # the API's documented error
            code, err = 2, f"error: {exc}\n"
        else:
            return "traceback", "".join(traceback.format_exception_only(exc)).strip()
    finally:
        signal.alarm(0)
    changed = [p for p in protect if _sha(p) != before[p]]
    if not Path("/dev/full").is_char_device():  # an output replaced the device: put it back
        os.remove("/dev/full")
        os.mknod("/dev/full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        os.chmod("/dev/full", 0o666)
        changed.append(Path("/dev/full"))
    if changed:
        return "data loss", f"changed {[str(p) for p in changed]}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if code == 0:
        return ("silent wrong", err.strip()[:200]) if expect is not None else ("ok", "")
    if code != 2 or len(lines) != 1:
        return "misleading", f"exit {code}: {err.strip()[:300]}"
    if expect is not None and expect.lower() not in lines[0].lower():
        return "misleading", lines[0]
    return "clear line", lines[0]


def fixtures(root: Path) -> dict[str, Path]:
    from scalinglab import fit, load_runs

    frame = pd.read_csv(CHINCHILLA / "chinchilla_epoch_nd.csv").iloc[::4]
    good = root / "runs.csv"
    frame[["N", "D", "loss"]].rename(columns={"N": "params", "D": "tokens"}).to_csv(
        good, index=False
    )
    fitted = fit("chinchilla", load_runs(good), bootstrap=20, seed=0)
    fit_json = root / "fit.json"
    fitted.save(fit_json)
    store = root / "s.db"
    _store(store)
    return {"runs": good, "fit": fit_json, "store": store}


def _store(path: Path, *, sweep: str = "s1", error: str = "boom") -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from scalinglab.store import Store
    from scalinglab.sweep.spec import parse_spec
    from test_store import fake_result, make_run

    spec = parse_spec(
        f'[sweep]\nname = "{sweep}"\n[design]\nkind = "grid"\nparams = [1e5]\ntokens = [1e6]\n'
    )
    runs = [make_run(layers, tokens) for layers in (1, 2, 3) for tokens in (4096, 8192, 16384)]
    with Store(path) as s:
        s.add_sweep(spec, runs)
        for i, run in enumerate(runs[:-1]):
            loss = 2.0 + 4.0 / run.params**0.3 + 30.0 / run.tokens**0.3 + 0.01 * i
            s.record_result(run, fake_result(run, loss=loss))
        s.record_failure(runs[-1].key, error, final=True)


def _edit_fit(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    d = json.loads(src.read_text())
    edit(d)
    dst.write_text(json.dumps(d))
    return dst


def cases(root: Path, f: dict[str, Path]) -> list[tuple[str, str, Callable, str | None, list]]:
    """(cause, name, action, expected substring or None for 'should succeed', protected)."""
    c: list[tuple[str, str, Callable, str | None, list]] = []

    def cli(cause: str, name: str, args: list[str], expect: str | None, protect=()) -> None:
        c.append((cause, name, lambda: run_cli([str(a) for a in args]), expect, list(protect)))

    def api(cause: str, name: str, call: Callable[[], Any], expect: str | None) -> None:
        def action() -> tuple[int, str, str]:
            call()
            return 0, "", ""

        c.append((cause, name, action, expect, []))

    runs, fit_json, store = f["runs"], f["fit"], f["store"]
    # 1. markup
    markup = root / "markup.csv"
    pd.DataFrame(
        {"params": [1e8, 2e8, 4e8], "tokens": [2e9, 4e9, 8e9], "loss": [3, "[/x]", 2.5]}
    ).to_csv(markup, index=False)
    cli("markup", "loss cell [/x]", ["fit", markup], "loss")
    bracket = root / "runs[v2].csv"
    bracket.write_text("size,tokens,loss\n1e8,2e9,3.0\n")
    cli("markup", "file runs[v2].csv named as written", ["fit", bracket], "runs[v2].csv")
    mstore = root / "markup.db"
    _store(mstore, sweep="[/x]", error="bad [/x] thing")
    cli("markup", "sweep/run names [/x] in status", ["sweep", "status", "--store", mstore], None)
    cli(
        "markup",
        "plan --gpu '[/gpu]'",
        ["plan", "--fit", fit_json, "--budget", "1e21", "--gpu", "[/gpu]"],
        "--gpu",
    )
    cli(
        "markup",
        "compute --gpu '[bold]x'",
        ["compute", "-N", "1e9", "-D", "2e10", "--gpu", "[bold]x"],
        "--gpu",
    )
    cli("markup", "fit -c params='[/x]'", ["fit", runs, "-c", "params=[/x]"], "[/x]")
    cli("markup", "fit --law '[/x]'", ["fit", runs, "--law", "[/x]"], "--law")
    cli(
        "markup",
        "report --title '[/x]'",
        [
            "report",
            "--runs",
            runs,
            "--title",
            "[/x]",
            "--out",
            root / "t.html",
            "--no-holdout",
            "--json",
        ],
        None,
    )
    cli(
        "markup",
        "sweep export --sweep '[/x]'",
        ["sweep", "export", "--store", store, "--sweep", "[/x]"],
        "[/x]",
    )
    # 2. outputs checked
    folder = root / "adir"
    folder.mkdir()
    ro = root / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    if os.geteuid() == 0:  # root writes in a 0555 folder; /proc refuses new files to anyone
        ro = Path("/proc")
    for name, out in (
        ("a directory", folder),
        ("a file as folder", runs / "x.csv"),
        ("a read-only folder", ro / "x.csv"),
        ("/dev/full", Path("/dev/full")),
    ):
        cli(
            "outputs",
            f"sweep export --out {name}",
            ["sweep", "export", "--store", store, "--out", out],
            "--out",
        )
        cli("outputs", f"fit --out {name}", ["fit", runs, "--out", out], "--out")
        cli(
            "outputs",
            f"plan --csv {name}",
            ["plan", "--fit", fit_json, "--budget", "1e21", "--csv", out],
            "--csv",
        )
        cli(
            "outputs",
            f"report --out {name}",
            ["report", "--runs", runs, "--out", out, "--no-holdout"],
            "--out",
        )
        cli(
            "outputs",
            f"backtest --figure {name}",
            ["backtest", runs, "--figure", out, "-B", "0", "--n-cuts", "1"],
            "--figure",
        )
    cli(
        "outputs",
        "report --figures into a file",
        ["report", "--runs", runs, "--out", root / "r.html", "--figures", runs, "--no-holdout"],
        "--figures",
        [runs],
    )
    # 3. outputs overwrite inputs
    copy = root / "copy.csv"
    copy.write_bytes(runs.read_bytes())
    cli("overwrite", "fit runs.csv --out runs.csv", ["fit", copy, "--out", copy], "--out", [copy])
    scopy = root / "copy.db"
    scopy.write_bytes(store.read_bytes())
    cli(
        "overwrite",
        "sweep export --store s.db --out s.db",
        ["sweep", "export", "--store", scopy, "--out", scopy],
        "--out",
        [scopy],
    )
    cli("overwrite", "fit --out a store", ["fit", runs, "--out", scopy], "--out", [scopy])
    fcopy = root / "fcopy.json"
    fcopy.write_bytes(fit_json.read_bytes())
    cli(
        "overwrite",
        "plan --csv the fit file",
        ["plan", "--fit", fcopy, "--budget", "1e21", "--csv", fcopy],
        "--csv",
        [fcopy],
    )
    cli(
        "overwrite",
        "report --out the runs table",
        ["report", "--runs", copy, "--out", copy, "--no-holdout"],
        "--out",
        [copy],
    )
    cli(
        "overwrite",
        "report --out the store",
        ["report", "--store", scopy, "--out", scopy, "--no-holdout"],
        "--out",
        [scopy],
    )
    cli(
        "overwrite",
        "backtest --figure the runs",
        ["backtest", copy, "--figure", copy, "-B", "0"],
        "--figure",
        [copy],
    )
    link = root / "link.csv"
    link.symlink_to(copy)
    cli("overwrite", "fit --out a link to the input", ["fit", copy, "--out", link], "--out", [copy])
    # Documented rule: an existing regular file that is no input and no store is replaced, and
    # a missing folder is created; these two must succeed.
    existing = root / "existing.json"
    existing.write_text("old output")
    cli("overwrite", "fit --out an existing output file", ["fit", runs, "--out", existing], None)
    cli(
        "outputs",
        "sweep export --out a missing folder",
        ["sweep", "export", "--store", store, "--out", root / "new" / "x.csv"],
        None,
    )
    # 4. damaged stores
    empty = root / "empty.db"
    empty.write_bytes(b"")
    noschema = root / "noschema.db"
    sqlite3.connect(noschema).close()
    sqlite3.connect(noschema).execute("PRAGMA user_version=0").connection.close()
    corrupt = root / "corrupt.db"
    data = bytearray(store.read_bytes())
    rng = np.random.default_rng(0)
    for page in range(1, len(data) // 4096):  # every page but the header's, in its middle
        data[page * 4096 + 8 : page * 4096 + 2048] = rng.bytes(2040)
    corrupt.write_bytes(bytes(data))
    foreign = root / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    textdb = root / "text.db"
    textdb.write_text("hello")
    for name, db in (
        ("empty", empty),
        ("no schema", noschema),
        ("corrupt page", corrupt),
        ("foreign sqlite", foreign),
        ("text file", textdb),
        ("a folder", folder),
    ):
        cli("store", f"sweep status on {name}", ["sweep", "status", "--store", db], "--store")
        cli("store", f"sweep export on {name}", ["sweep", "export", "--store", db], "--store")
        cli("store", f"fit on {name} store", ["fit", db], str(db.name))
        cli(
            "store",
            f"report --store {name}",
            ["report", "--store", db, "--out", root / "r.html"],
            "--store",
        )

    # 5. fit.json
    def bad_fit(name: str, edit: Callable[[dict], None], expect: str) -> None:
        path = _edit_fit(fit_json, root / f"fit-{len(c)}.json", edit)
        for cmd in (
            ["plan", "--fit", path, "--budget", "1e21"],
            ["compare", "--fit", path, "--fit", fit_json, "--at", "1e21"],
            ["report", "--runs", runs, "--fit", path, "--out", root / "r.html", "--no-holdout"],
        ):
            cli("fit.json", f"{cmd[0]}: {name}", cmd, expect)

    bad_fit("string domain", lambda d: d.__setitem__("domain", "wide"), "domain")
    bad_fit("list params", lambda d: d.__setitem__("params", [1, 2, 3]), "params")
    bad_fit("one-element range", lambda d: d["domain"].__setitem__("params", [1e8]), "domain")
    bad_fit(
        "reversed domain",
        lambda d: d["domain"].__setitem__("params", d["domain"]["params"][::-1]),
        "domain",
    )
    bad_fit(
        "bootstrap rows of wrong width",
        lambda d: d.__setitem__("bootstrap_params", [[1, 2], [3, 4]]),
        "bootstrap",
    )
    bad_fit("string parameter", lambda d: d["params"].__setitem__("alpha", "x"), "alpha")
    bad_fit("negative A", lambda d: d["params"].__setitem__("A", -5.0), "A")
    bad_fit("null law", lambda d: d.__setitem__("law", None), "law")
    bad_fit("string n_runs", lambda d: d.__setitem__("n_runs", "many"), "n_runs")
    bad_fit("ci as list", lambda d: d.__setitem__("ci", [1, 2]), "ci")
    bad_fit("infinite domain", lambda d: d["domain"].__setitem__("flops", [1e18, 1e400]), "domain")
    binfit = root / "bin.json"
    binfit.write_bytes(bytes(range(256)))
    cli(
        "fit.json",
        "plan: binary fit file",
        ["plan", "--fit", binfit, "--budget", "1e21"],
        "bin.json",
    )
    cli("fit.json", "plan: fit is a folder", ["plan", "--fit", folder, "--budget", "1e21"], "--fit")
    # specs
    binspec = root / "bin.toml"
    binspec.write_bytes(b"\xff\xfe\x00[sweep]\x80")
    cli("spec", "sweep plan: binary spec", ["sweep", "plan", binspec, "--no-probe"], "bin.toml")
    cli("spec", "sweep plan: spec is a folder", ["sweep", "plan", folder, "--no-probe"], "SPEC")
    nocorp = root / "nocorpus.toml"
    nocorp.write_text(
        '[sweep]\nname = "x"\n[data]\ncorpus = "/nonexistent/corpus.txt"\n'
        '[design]\nkind = "grid"\nparams = [2e4]\ntokens = [1e5]\n'
    )
    cli(
        "conflicts",
        "sweep plan: corpus that does not exist",
        ["sweep", "plan", nocorp, "--no-probe"],
        "corpus",
    )
    big1 = root / "big1.toml"
    big1.write_text(
        '[sweep]\nname = "x"\n[design]\nkind = "isoflop"\nflops = [1e12]\n'
        "sizes_per_level = 1000000\n"
    )
    cli(
        "conflicts",
        "sweep plan: 1,000,000 sizes per level",
        ["sweep", "plan", big1, "--no-probe"],
        "sizes_per_level",
    )
    big2 = root / "big2.toml"
    levels = ", ".join(str(1e4 + i) for i in range(100_000))
    big2.write_text(
        f'[sweep]\nname = "x"\n[design]\nkind = "grid"\nparams = [{levels}]\ntokens = [1e5]\n'
    )
    cli("conflicts", "sweep plan: 100,000 levels", ["sweep", "plan", big2, "--no-probe"], "params")
    # checkpoints
    cli(
        "checkpoints",
        "train --checkpoint-dir is a file",
        [
            "train",
            "-N",
            "2e4",
            "-D",
            "1e4",
            "--corpus",
            "synthetic",
            "--checkpoint-dir",
            runs,
            "--context",
            "16",
            "--batch-size",
            "2",
        ],
        "--checkpoint-dir",
        [runs],
    )
    # 6. overflow
    huge = root / "huge.csv"
    hf = pd.read_csv(runs)
    hf.loc[3, "params"] = 1e308
    hf.to_csv(huge, index=False)
    cli("finite", "fit: params 1e308 (6ND inf)", ["fit", huge], "row")
    cli(
        "finite",
        "report: params 1e308",
        ["report", "--runs", huge, "--out", root / "r.html", "--no-holdout"],
        "row",
    )
    api(
        "finite",
        "load_runs: tokens 1e308",
        lambda: __import__("scalinglab").load_runs(
            pd.DataFrame({"params": [1e8, 2e8], "tokens": [1e308, 1e9], "loss": [3.0, 2.9]})
        ),
        "tokens",
    )
    inffit = _edit_fit(fit_json, root / "inf.json", lambda d: d["params"].__setitem__("A", 1e308))
    cli("finite", "plan: A 1e308", ["plan", "--fit", inffit, "--budget", "1e21"], "A")
    negfit = _edit_fit(
        fit_json, root / "neg.json", lambda d: d["params"].__setitem__("alpha", -0.3)
    )
    cli("finite", "plan: alpha < 0", ["plan", "--fit", negfit, "--budget", "1e21"], "alpha")
    cli(
        "finite",
        "plan --budget 1e308 (finite, noted as extrapolation)",
        ["plan", "--fit", fit_json, "--budget", "1e308"],
        None,
    )
    cli("finite", "compute -N 1e308 -D 1e308", ["compute", "-N", "1e308", "-D", "1e308"], "")
    cli(
        "finite",
        "plan --max-params inf",
        ["plan", "--fit", fit_json, "--budget", "1e21", "--max-params", "inf"],
        "--max-params",
    )
    # 7. conflicts
    cli(
        "conflicts",
        "compute --params with a shape",
        [
            "compute",
            "--params",
            "1e9",
            "--layers",
            "12",
            "--d-model",
            "768",
            "--heads",
            "12",
            "-D",
            "1e10",
        ],
        "--params",
    )
    cli(
        "conflicts",
        "plan --budget with --target-loss",
        ["plan", "--fit", fit_json, "--budget", "1e21", "--target-loss", "2.0"],
        "--target-loss",
    )
    cli(
        "conflicts",
        "report --store and --runs",
        ["report", "--store", store, "--runs", runs, "--out", root / "r.html"],
        "--runs",
    )
    # 8. API misuse
    import scalinglab

    api("api", "load_runs(42)", lambda: scalinglab.load_runs(42), "source")
    api("api", "load_runs(None)", lambda: scalinglab.load_runs(None), "source")
    api("api", "load_fit({...})", lambda: scalinglab.load_fit({"law": "chinchilla"}), "path")
    api("api", "load_fit(3.5)", lambda: scalinglab.load_fit(3.5), "path")
    good_runs = scalinglab.load_runs(runs)
    api(
        "api",
        "fit(seed='abc')",
        lambda: scalinglab.fit("chinchilla", good_runs, seed="abc"),
        "seed",
    )
    api(
        "api",
        "fit(bootstrap='x')",
        lambda: scalinglab.fit("chinchilla", good_runs, bootstrap="x"),
        "bootstrap",
    )
    api("api", "fit(runs=42)", lambda: scalinglab.fit("chinchilla", 42), "runs")
    api("api", "fit(law=3)", lambda: scalinglab.fit(3, good_runs), "law")
    api(
        "api",
        "load_spec(bytes file)",
        lambda: __import__("scalinglab.sweep.spec", fromlist=["x"]).load_spec(binspec),
        "bin.toml",
    )
    return c


def main() -> None:
    verbose = "--verbose" in sys.argv
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("SCALINGLAB_CACHE", tempfile.mkdtemp())
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        f = fixtures(root)
        os.chdir(root)
        all_cases = cases(root, f)
        for cause, name, action, expect, protect in all_cases:
            outcome, detail = classify(action, expect, protect)
            counts[outcome] += 1
            if verbose or outcome not in ("clear line", "ok"):
                print(f"{outcome:13} [{cause}] {name}: {detail[:240]}")
        os.chmod(root / "ro", 0o755)
    print(f"\n{len(all_cases)} cases")
    for outcome in (
        "clear line",
        "ok",
        "traceback",
        "silent wrong",
        "data loss",
        "hang",
        "misleading",
    ):
        print(f"| {outcome} | {counts[outcome]} |")


if __name__ == "__main__":
    np.seterr(all="warn")
    main()
