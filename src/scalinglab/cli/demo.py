"""``scalinglab demo``: sweep, fit, check, plan, train the plan and report, on this machine."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scalinglab.cli._common import console, err_console, esc, fail, output, print_json
from scalinglab.errors import ScalingLabError

__all__ = ["demo", "demo_summary"]


class _TrainingBars:
    """One bar over a plan's FLOPs, fed by the executor's run events."""

    def __init__(
        self,
        plan: Any,
        progress: Progress,
        reused: set[str] | frozenset = frozenset(),
        title: str = "training",
    ):
        self.progress = progress
        self.cost = {r.key: r.cost_flops for r in plan.runs}
        self.per_token = {r.key: r.cost_flops / max(1, r.cost_tokens) for r in plan.runs}
        self.done: dict[str, float] = {k: self.cost[k] for k in reused if k in self.cost}
        self.reused = len(self.done)
        self.finished = 0
        self.total_runs = len(plan.runs)
        self.task = progress.add_task(
            title, total=sum(self.cost.values()) or 1.0, status=self._status()
        )

    def _status(self) -> str:
        reused = f" (+{self.reused} reused from the store)" if self.reused else ""
        return f"{self.finished}/{self.total_runs - self.reused} runs trained{reused}"

    def __call__(self, event: Any) -> None:
        key = event.run.key
        if event.kind == "progress" and event.point is not None:
            tokens = float(event.point.get("tokens") or 0.0)
            self.done[key] = min(self.cost.get(key, 0.0), tokens * self.per_token.get(key, 0.0))
        elif event.kind == "finished":
            self.finished += 1
            self.done[key] = self.cost.get(key, 0.0)
            loss = "" if event.loss is None else f" loss {event.loss:.3f}"
            self.progress.console.print(
                f"  trained N={event.run.params:,} on D={event.run.tokens:,} tokens{loss}",
                highlight=False,
            )
        elif event.kind in ("retry", "failed"):
            self.done[key] = 0.0
            last = (event.error or "?").strip().splitlines()[-1:] or ["?"]
            self.progress.console.print(
                f"[yellow]{event.kind}:[/] run {key[:12]}: {last[0]}", highlight=False
            )
        self.progress.update(self.task, completed=sum(self.done.values()), status=self._status())


def demo(
    store: Annotated[
        Path, typer.Option("--store", help="The store; finished runs in it are reused.")
    ] = Path("scalinglab.db"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML report to write.")] = Path(
        "scalinglab-report.html"
    ),
    workers: Annotated[
        int | None, typer.Option("--workers", "-k", help="Runs trained in parallel (default 2).")
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option("--bootstrap", help="Bootstrap resamples of the fit (default: the demo's)."),
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option("--figures", help="Also write every figure to this folder as PNG and SVG."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary instead of text.")
    ] = False,
) -> None:
    """The whole loop on this machine: train a sweep, fit, plan, train the plan, report.

    Trains an IsoFLOP sweep of small GPT models on the built-in stdlib corpus
    (examples/demo.toml) into --store, fits the Chinchilla law with a bootstrap (or the simplest
    form the sweep identifies), predicts the top compute level from the others, plans the
    compute-optimal run at ten times the largest sweep run, trains it and an alternative at the
    same compute, and writes one HTML report that compares predictions with measurements. Run it
    again: the finished runs are reused and nothing is retrained.
    """
    from scalinglab.demo import demo_plan, run_demo

    t0 = time.monotonic()
    if workers is not None and workers < 1:
        fail(f"--workers must be an integer ≥ 1, got {workers}")
    if bootstrap is not None and bootstrap < 0:
        fail(f"--bootstrap must be ≥ 0, got {bootstrap}")
    if store.exists() and store.is_dir():
        fail(f"--store: {str(store)!r} is a folder; give a file name such as scalinglab.db")
    output(out, "out", inputs=[store])
    say = err_console if as_json else console
    say.print("[bold]scalinglab demo[/]: designing the sweep...", highlight=False)
    try:
        plan = demo_plan(workers)
    except ScalingLabError as exc:
        fail(f"demo sweep: {exc}")
    levels = sorted({r.compute_level for r in plan.runs if r.compute_level is not None})
    spread = f" at {len(levels)} compute levels" if levels else ""
    say.print(
        f"{len(plan.runs)} models{spread}, {plan.points} points of the law, "
        f"{plan.total_flops:.3g} FLOP on {workers or plan.workers} worker(s); store {store}",
        highlight=False,
    )
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=say,
        transient=False,
    )
    try:
        with bar:
            events = {"bars": _TrainingBars(plan, bar, _finished_keys(store, plan))}
            fit_task: dict[str, Any] = {}

            def boot(stage: str, done: int, total: int) -> None:
                if stage not in fit_task:
                    fit_task[stage] = bar.add_task(stage, total=total, status="")
                bar.update(fit_task[stage], completed=done, total=total, status=f"{done}/{total}")

            def planned(check: Any) -> None:
                # Printed before the runs train: the prediction is on record first.
                fit_task.clear()  # a later bootstrap (the held-out check) gets its own bar
                for line in _plan_lines(check):
                    bar.console.print(line, highlight=False)
                events["bars"] = _TrainingBars(
                    check.plan,
                    bar,
                    _finished_keys(store, check.plan),
                    title="plan + alternative",
                )

            result = run_demo(
                store,
                out,
                workers=workers,
                **({} if bootstrap is None else {"bootstrap": bootstrap}),
                figures_dir=figures,
                on_event=lambda event: events["bars"](event),
                on_plan=planned,
                progress=boot,
                plan=plan,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished runs are kept in {store}; run `scalinglab demo` again to "
            "go on where it stopped",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    except ScalingLabError as exc:
        fail(f"demo: {exc}")
    payload = demo_summary(result, time.monotonic() - t0)
    if as_json:
        print_json(payload)
        return
    _print_demo(payload)


def _finished_keys(store: Path, plan: Any) -> set[str]:
    """Keys of the plan's runs that the store already holds finished (reused, not retrained)."""
    if not store.is_file():
        return set()
    from scalinglab.store import Store, StoreError

    try:
        with Store(store, readonly=True) as db:
            status = db.statuses(r.key for r in plan.runs)
    except StoreError:
        return set()
    return {k for k, v in status.items() if v == "finished"}


def _interval(run: Any) -> str:
    if run.interval is None:
        return ""
    return f" ({run.level:.0%} interval [{run.interval[0]:.4f}, {run.interval[1]:.4f}])"


def _plan_lines(check: Any) -> list[str]:
    a = check.allocation
    plan_run, *others = check.predictions
    lines = [
        f"plan for {check.budget_flops:.3g} FLOP (10× the largest sweep run): N = "
        f"{a.params:,.0f}, D = {a.tokens:,.0f} tokens ({a.tokens_per_param:.0f} per parameter); "
        f"trained as N = {plan_run.params:,.0f}, D = {plan_run.tokens:,.0f}: predicted loss "
        f"[bold]{plan_run.predicted:.4f}[/]{_interval(plan_run)}"
    ]
    for run in others:
        lines.append(
            f"alternative at the same compute, {run.label} (N = {run.params:,.0f}, D = "
            f"{run.tokens:,.0f}): predicted loss {run.predicted:.4f}{_interval(run)}"
        )
    lines.append("training both...")
    return lines


def demo_summary(result: Any, wall_s: float) -> dict[str, Any]:
    """The machine-readable summary of a demo."""
    fit = result.fit
    return {
        "wall_s": wall_s,
        "sweep_wall_s": result.sweep_wall_s,
        "check_wall_s": result.check_wall_s,
        "cpu_s": result.cpu_s,
        "trained": result.trained,
        "reused": result.reused,
        "points": len(result.runs),
        "store": str(result.store),
        "report": str(result.report.path),
        "law": fit.law,
        "identified": result.law.identified,
        "law_note": result.law.note,
        "params": dict(fit.params),
        "derived": fit.derived,
        "ci": None if fit.ci is None else {k: list(v) for k, v in fit.ci.items()},
        "heldout": _plain(result.heldout),
        "budget_flops": result.budget_flops,
        "mfu": result.mfu,
        "plan": None if result.allocation is None else _plain(result.allocation),
        "checks": [
            {
                "label": c.label,
                "params": c.params,
                "tokens": c.tokens,
                "flops": c.flops,
                "predicted": c.predicted,
                "interval": None if c.interval is None else list(c.interval),
                "level": c.level,
                "measured": c.measured,
                "rel_error": c.rel_error,
                "inside": c.inside,
            }
            for c in result.checks
        ],
        "warnings": list(result.report.content.warnings),
        "commands": list(result.commands),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):  # the fit's read-only mappings included
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _print_demo(p: dict[str, Any]) -> None:
    console.print(
        f"runs: {p['trained']} trained now, {p['reused']} reused from {p['store']} "
        f"({p['points']} points of the law)",
        highlight=False,
    )
    ci = p.get("ci") or {}
    values = {**p["params"], **(p.get("derived") or {})}
    names = ("E", "alpha", "beta", "alpha_N", "alpha_D", "a")
    parts = []
    for name in names:
        if name in values:
            interval = ci.get(name)
            shown = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
            parts.append(f"{name} = {values[name]:.3f}{shown}")
    console.print(
        f"law ({p['law']}, 95% bootstrap intervals): " + ", ".join(parts), highlight=False
    )
    console.print(esc(p["law_note"]), highlight=False)
    held = p.get("heldout")
    if held and held.get("runs"):
        console.print(
            f"held-out check: fitted on the {held['n_train']} runs with C ≤ "
            f"{held['threshold_flops']:.3g} FLOP, the {held['n_holdout']} run(s) above are "
            f"predicted with mean |error| {100 * held['mean_abs_rel_error']:.2f}% (worst "
            f"{100 * held['max_abs_rel_error']:.2f}%)",
            highlight=False,
        )
    checks = p.get("checks") or []
    for c in checks:
        if c["measured"] is None:
            continue
        where = {True: "inside", False: "outside", None: "no"}[c["inside"]]
        level = f"{c['level']:.0%} " if c["level"] else ""
        console.print(
            f"{c['label']}, trained (N = {c['params']:,.0f}, D = {c['tokens']:,.0f}): predicted "
            f"{c['predicted']:.4f}, measured [bold]{c['measured']:.4f}[/] "
            f"({100 * c['rel_error']:+.2f}%, {where} the {level}interval)",
            highlight=False,
        )
    if len(checks) > 1 and all(c["measured"] is not None for c in checks[:2]):
        plan, alt = checks[0], checks[1]
        gap = alt["measured"] / plan["measured"] - 1
        predicted_gap = alt["predicted"] / plan["predicted"] - 1
        verdict = "beats" if gap > 0 else "does not beat"
        console.print(
            f"at equal compute the plan {verdict} the alternative ({alt['label']}): "
            f"[bold]{100 * gap:+.2f}%[/] loss for the alternative ({100 * predicted_gap:+.2f}% "
            "predicted)",
            highlight=False,
        )
    for warning in p.get("warnings") or ():
        console.print(f"[yellow]warning:[/] {esc(warning)}", highlight=False)
    console.print(
        f"wall time: [bold]{p['wall_s']:.0f} s[/] (sweep {p['sweep_wall_s']:.0f} s, plan and "
        f"alternative {p['check_wall_s']:.0f} s; {p['cpu_s']:.0f} CPU-seconds of training)",
        highlight=False,
    )
    console.print(f"report: [bold]{esc(p['report'])}[/]", highlight=False)
