"""``scalinglab sweep suggest``: the runs to train next for the most certainty per FLOP.

Thin by design: parse, call :func:`scalinglab.sweep.suggest.suggest`, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scalinglab.cli._common import (
    api_default,
    console,
    err_console,
    esc,
    fail,
    fail_with,
    output,
    print_json,
)
from scalinglab.errors import ScalingLabError

# The API's arguments whose option is named otherwise.
_OPTIONS = {
    "budget": "--budget",
    "target": "--target",
    "for_budget": "--for-budget",
    "runs": "RUNS",
}


def _api() -> Any:
    from scalinglab.sweep import suggest as api

    return api


def _sizes(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"--sizes takes numbers separated by commas, got {text!r}")


def _print(s: Any, out: Path | None) -> None:
    table = Table(title=f"Next runs for {esc(s.target.describe())} (law {esc(s.law)})")
    bundles = any(p.candidate.branches for p in s.proposals)
    names = ["#", "N (params)", "D (tokens)", "D/N", "shape", "cost (FLOP)", "share"]
    if bundles:  # a WSD trunk's cooldowns: the D of each point they add
        names.insert(3, "+ cooldowns to D")
    resumed = any(p.candidate.run and p.candidate.run.resume_tokens for p in s.proposals)
    if resumed:  # continues a finished WSD run's kept checkpoint: paid from there only
        names.insert(3, "from D")
    for name in names:
        table.add_column(name, justify="left" if name == "shape" else "right")
    for i, p in enumerate(s.proposals, 1):
        c = p.candidate
        shape = f"{c.run.shape.n_layer}×{c.run.shape.d_model}" if c.run else "-"
        row = [
            str(i),
            f"{c.params:,.0f}",
            f"{c.tokens:,.0f}",
            f"{c.tokens / c.params:.1f}",
            shape,
            f"{c.cost_flops:.3g}",
            f"{p.share:.0%}",
        ]
        if bundles:
            row.insert(3, ", ".join(f"{d:,.0f}" for d in c.branches) or "-")
        if resumed:
            row.insert(3, f"{c.run.resume_tokens:,}" if c.run and c.run.resume_tokens else "-")
        table.add_row(*row)
    console.print(table)
    now, after = s.interval(s.sd_now), s.interval(s.sd_after)
    what = "loss" if s.target.kind == "predict" else "N_opt"
    pct = f"{s.level:.0%}"
    console.print(
        f"{what + ' now:':15s} {s.value:.4g}  {pct} interval [{now[0]:.4g}, {now[1]:.4g}]"
    )
    ratio = (after[1] - after[0]) / (now[1] - now[0])
    console.print(
        f"expected after: {s.value:.4g}  {pct} interval [{after[0]:.4g}, {after[1]:.4g}]  "
        f"(width ×{ratio:.2f})"
    )
    console.print(
        f"{len(s.proposals)} runs"
        + (f" ({sum(len(p.candidate.points) for p in s.proposals)} points)" if bundles else "")
        + f", {s.spent_flops:.3g} of {s.budget_flops:.3g} FLOP; "
        f"{s.n_candidates} buildable candidates scored ({s.rule}); fit on {s.n_runs} runs"
        + (f", {s.n_pending} planned" if s.n_pending else "")
    )
    for note in s.notes:
        err_console.print(f"note: {esc(note)}", highlight=False)
    if out is not None:
        console.print(
            f"wrote {esc(out)} (sweep {esc(repr(s.spec.name))}); "
            f"train it: scalinglab sweep run {esc(out)}",
            highlight=False,
        )


def suggest(
    runs: Annotated[
        Path, typer.Argument(metavar="RUNS|STORE", help="A runs table or a scalinglab store.")
    ],
    budget: float = typer.Option(..., "--budget", help="FLOPs the proposed runs may cost in all."),
    target: str | None = typer.Option(
        None, "--target", help="A prediction to pin down: params=N,tokens=D."
    ),
    for_budget: float | None = typer.Option(
        None, "--for-budget", help="Pin down the compute-optimal N at this many FLOPs instead."
    ),
    k: int = typer.Option(api_default(_api().suggest, "k"), "--k", help="At most this many runs."),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the runs as a sweep spec (TOML) for `scalinglab sweep run`."
        ),
    ] = None,
    law: str = typer.Option(api_default(_api().suggest, "law"), "--law", help="Law of N and D."),
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="Trainer family to snap sizes to (default: the store's last sweep)."
        ),
    ] = None,
    sizes: str | None = typer.Option(
        None, "--sizes", help="Model sizes you can build, comma-separated (imported runs)."
    ),
    step_tokens: int = typer.Option(
        api_default(_api().suggest, "step_tokens"),
        "--step-tokens",
        help="Tokens per optimiser step, for imported runs' lengths.",
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Bootstrap resamples: their spread replaces the Fisher prior."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestion as JSON."),
) -> None:
    """Propose the runs that shrink a target's interval most per FLOP, within a budget.

    Example: scalinglab sweep suggest runs.db --target params=1e6,tokens=2e7 --budget 1e14
    --out next.toml
    """
    api = _api()
    if (target is None) == (for_budget is None):
        fail("give one of --target params=N,tokens=D or --for-budget FLOPS")
    output(out, "out", inputs=[runs, spec])
    try:
        goal = api.Target.parse(target) if target is not None else api.Target.allocation(for_budget)
        result = api.suggest(
            runs,
            goal,
            budget,
            k=k,
            law=law,
            spec=spec,
            sizes=_sizes(sizes),
            step_tokens=step_tokens,
            fit_options={"bootstrap": bootstrap} if bootstrap else None,
        )
        if out is not None:
            api.write_spec(result, out)
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)
    if as_json:
        print_json({**result.to_dict(), "out": str(out) if out else None})
    else:
        _print(result, out)
