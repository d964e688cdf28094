"""The HTML report: one self-contained page, every user string escaped, tables and commands.

The law drawn is Besiroglu et al.'s (2024, Table 1) refit of Chinchilla, E = 1.8172,
A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658; its runs are made from it with a known noise
so that names, groups and values are under the test's control.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab import Fit
from scalinglab.cli import app
from scalinglab.report.content import build_content
from scalinglab.report.figures import figure_bytes, loss_vs_compute_figure, residuals_figure
from scalinglab.report.html import embed_svg, format_number, render_html, write_report
from scalinglab.runs import load_runs

EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
HOSTILE = "<script>alert('x')</script>&\"q\""


def _runs(n: int = 40):
    rng = np.random.default_rng(3)
    params = np.exp(rng.uniform(np.log(1e7), np.log(1e9), n))
    tokens = np.exp(rng.uniform(np.log(1e8), np.log(1e10), n))
    law = Fit.from_params("chinchilla", EPOCH)
    loss = law.predict(params=params, tokens=tokens) * np.exp(rng.normal(0, 0.005, n))
    frame = pd.DataFrame(
        {
            "params": params,
            "tokens": tokens,
            "loss": loss,
            "run_id": [f"{HOSTILE}-{i}" for i in range(n)],
            "group": ["<b>grp</b>"] * n,
        }
    )
    return load_runs(frame)


@pytest.fixture(scope="module")
def content():
    runs = _runs()
    fit = Fit.from_params("chinchilla", EPOCH)
    return build_content(
        runs,
        fit,
        budgets=(5.76e23, 1e22),
        title=f"report {HOSTILE}",
        commands=(f"scalinglab report --runs '{HOSTILE}.csv' --out r.html",),
    )


@pytest.fixture(scope="module")
def page(content):
    figures = [loss_vs_compute_figure(content), residuals_figure(content)]
    return render_html(content, figures, generated=dt.datetime(2024, 1, 2, tzinfo=dt.UTC))


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))


def test_user_strings_are_escaped_everywhere(page):
    assert "<script>alert" not in page
    assert "<b>grp</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;q&quot;" in page
    parsed = _Collector()
    parsed.feed(page)
    assert parsed.scripts == 1, "only the page's own script"
    assert "&lt;b&gt;grp&lt;/b&gt;" in page  # the group's <b> came through as text


def test_the_page_loads_nothing_from_anywhere(page):
    parsed = _Collector()
    parsed.feed(page)
    for tag, key, value in parsed.attrs:
        if key in {"src", "href", "xlink:href", "action", "poster", "data"}:
            assert value.startswith(("#", "data:")), f"<{tag} {key}={value!r}> would fetch"
    assert not re.search(r"url\((?!#)", page), "CSS or SVG url() outside the page"
    assert "@import" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_element_ids_are_unique_across_inline_figures(page):
    ids = re.findall(r'\bid="([^"]+)"', page)
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert not duplicated
    # every internal reference resolves
    refs = set(re.findall(r'(?:url\(#|href="#)([^")]+)', page))
    assert refs <= set(ids)


def test_tables_hold_the_fit_plan_and_runs(page, content):
    assert 'id="fit-table"' in page and 'id="plan-table"' in page and 'id="run-table"' in page
    # Chinchilla's budget in the plan table, formatted and sortable by its raw value
    assert "5.76·10²³" in page
    assert 'data-v="5.76e+23"' in page
    for name in ("E", "A", "B", "α", "β"):
        assert f'<td class="text">{name}</td>' in page
    assert page.count("<tr") >= len(content.runs) + 2 + len(EPOCH)


def test_reproducing_commands_are_shown_escaped(page):
    assert "scalinglab report --runs &#x27;&lt;script&gt;" in page
    assert "<pre><code>" in page


def test_tooltips_name_each_run(page, content):
    titles = re.findall(r"<title>([^<]*)</title>", page)
    named = [t for t in titles if "grp" in t]
    # each run once in loss against compute, twice in the residuals (against C and D/N)
    assert len(named) == 3 * len(content.runs)
    assert all("N=" in t and "loss=" in t for t in named)


def test_embed_svg_prefixes_ids_and_adds_titles(content):
    fig = loss_vs_compute_figure(content)
    svg = figure_bytes(fig, "svg").decode()
    out = embed_svg(svg, "zz", fig.point_labels)
    assert not out.startswith("<?xml")
    assert all(i.startswith("zz-") for i in re.findall(r'\bid="([^"]+)"', out))
    assert out.count("<title>") == sum(len(v) for v in fig.point_labels.values())
    # labels that do not match the points are left out rather than misattributed
    gid = next(iter(fig.point_labels))
    wrong = embed_svg(svg, "zz", {gid: ("only one",)})
    assert "<title>" not in wrong
    with pytest.raises(ValueError, match="SVG"):
        embed_svg("<html></html>", "x")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.76e23, "5.76·10²³"),
        (0.3478, "0.3478"),
        (1234.0, "1,234"),
        (2.5e-5, "2.5·10⁻⁵"),
        (None, ""),
        (float("nan"), ""),
        ((1.5, 2.25), "[1.5, 2.25]"),
        ("text", "text"),
        (float("inf"), "∞"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_write_report_creates_folders_and_replaces_atomically(tmp_path, content):
    target = tmp_path / "deep" / "er" / "report.html"
    path = write_report(content, target, figures=[])
    assert path == target and target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not list(target.parent.glob(".*.tmp"))


def test_report_without_fit_shows_the_runs(tmp_path):
    runs = _runs(12)
    c = build_content(runs, None)
    text = render_html(c, [])
    assert 'id="run-table"' in text and 'id="fit-table"' not in text


# -- the command line -------------------------------------------------------------------------

runner = CliRunner()


def _one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    for w in words:
        assert w in text


def test_cli_needs_exactly_one_source(tmp_path):
    _one_line_error(runner.invoke(app, ["report", "--out", str(tmp_path / "r.html")]), "--store")
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n1e6,1e8,3.0\n")
    _one_line_error(
        runner.invoke(app, ["report", "--runs", str(csv), "--store", str(csv)]), "exactly one"
    )


def test_cli_names_a_folder_files(shared_data):
    folder = shared_data / "chinchilla_epoch"
    result = runner.invoke(app, ["report", "--runs", str(folder)])
    _one_line_error(result, "--runs", "chinchilla_epoch_nd.csv")


def test_cli_bad_values_get_one_line(tmp_path):
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n1e6,1e8,3.0\n1e6,1e8,-1\n")
    _one_line_error(runner.invoke(app, ["report", "--runs", str(csv)]), "row 2", "loss")
    _one_line_error(
        runner.invoke(app, ["report", "--runs", str(csv), "--budget", "-5"]), "--budget"
    )
    _one_line_error(runner.invoke(app, ["report", "--runs", str(csv), "--gpu", "abacus"]), "--gpu")
    _one_line_error(runner.invoke(app, ["report", "--runs", str(csv), "--mfu", "3"]), "--mfu")
    # The law is checked by the fit itself, once the runs are read.
    good = tmp_path / "good.csv"
    _runs().frame.to_csv(good, index=False)
    _one_line_error(runner.invoke(app, ["report", "--runs", str(good), "--law", "magic"]), "--law")
    _one_line_error(runner.invoke(app, ["report", "--runs", str(tmp_path / "none.csv")]), "no such")


@pytest.mark.slow
def test_cli_report_on_chinchilla_fits_and_plans_chinchillas_budget(tmp_path, shared_data):
    out = tmp_path / "chinchilla.html"
    figs = tmp_path / "figs"
    result = runner.invoke(
        app,
        [
            "report",
            "--runs",
            str(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv"),
            "--drop-top-loss",
            "5",
            "--bootstrap",
            "40",
            "--out",
            str(out),
            "--figures",
            str(figs),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["runs"] == 240
    # Besiroglu et al. (2024, Table 1): α = 0.3478, β = 0.3658 from the same 240 runs.
    assert summary["params"]["alpha"] == pytest.approx(0.3478, abs=0.02)
    assert summary["params"]["beta"] == pytest.approx(0.3658, abs=0.03)
    (plan,) = summary["plans"]
    assert plan["budget (FLOP)"] == 5.76e23
    assert plan["N"] * plan["D"] * 6 == pytest.approx(5.76e23, rel=1e-6)
    assert summary["holdout"]["n_holdout"] == 12  # 5 % of 240 runs, by compute
    page = out.read_text(encoding="utf-8")
    assert "5.76·10²³" in page and 'id="fit-table"' in page and 'id="heldout"' in page
    assert len(list(figs.glob("*.png"))) == len(list(figs.glob("*.svg"))) == 6


def test_the_answer_leads_the_page_with_the_trained_plan(content):
    import dataclasses

    from scalinglab.report.tables import trained_table
    from scalinglab.report.values import TrainedRun

    run = TrainedRun("plan", 7e10, 1.4e12, 5.9e23, 1.94, (1.92, 1.96), 0.9, 1.95)
    led = dataclasses.replace(
        content,
        answer=(f"Law: {HOSTILE}", "Plan: N = 70B"),
        trained=(run,),
        trained_table=trained_table([run]),
    )
    html = render_html(led, [loss_vs_compute_figure(led)], generated=dt.datetime(2024, 1, 2))
    assert html.index('id="answer"') < html.index('id="figures"') < html.index('id="fit"')
    assert HOSTILE not in html and "Plan: N = 70B" in html
    assert 'id="trained-table"' in html and "1.95" in html and ">yes<" in html
