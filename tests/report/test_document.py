"""The report engine: parts in reading order whatever order they were filled in, tables
collapsed, HTML self-contained, atomic writes; and the figure saver."""
from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from jetfm.errors import InputError
from jetfm.report import Code, Figure, Heading, Paragraph, Report, Table, pyplot, save_figure
from tests.report.checks import assert_reads_verdict_figures_tables


def _png(path) -> str:
    plt = pyplot(hep_style=False)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(5), np.arange(5) ** 2)
    return save_figure(fig, str(path), dpi=40)


def test_parts_in_reading_order_and_tables_collapsed(tmp_path):
    rep = Report("A | title")
    # filled in the order a report is computed: tables first, verdict last
    rep.details += [Heading("Numbers"), Table("Widths | all", ["name", "value"],
                                              [["a|b", "1.5"], ["c", "2 ± 0.1"]]),
                    Paragraph("A **bold** note with `code`."), Code("x = 1 < 2")]
    rep.figures.append(Figure(_png(tmp_path / "figs" / "one.png"), "Figure one"))
    rep.verdict.append("**It works**: 3 of 4.")
    md_path, html_path = rep.write(str(tmp_path / "out"))
    md, page = open(md_path).read(), open(html_path).read()
    assert_reads_verdict_figures_tables(md, page, n_figures=1)
    assert "![Figure one](../figs/one.png)" in md  # relative to the report's folder
    assert "| a\\|b | 1.5 |" in md and "**Widths | all**" in md
    assert "<details><summary>Widths | all</summary><table><tr><th>name</th>" in page
    assert "<td>2 ± 0.1</td>" in page and "<td>a|b</td>" in page
    assert "<p><b>It works</b>: 3 of 4.</p>" in page
    assert "<code>code</code>" in page and "<pre>x = 1 &lt; 2</pre>" in page
    data = page.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(data) == open(tmp_path / "figs" / "one.png", "rb").read()
    assert sorted(os.listdir(tmp_path / "out")) == ["report.html", "report.md"]


def test_details_get_a_heading_and_sections_join_each_part(tmp_path):
    fig = _png(tmp_path / "a.png")
    main = Report("Main", ["main verdict"], [Figure(fig, "main figure")],
                  [Heading("Main tables"), Table("t1", ["x"], [["1"]])])
    section = Report("Section", ["section verdict"], [Figure(fig, "section figure")],
                     [Paragraph("section text"), Table("t2", ["y"], [["2"]])])
    main.add(section)
    md = main.markdown(str(tmp_path))
    assert md.index("main verdict") < md.index("section verdict") < md.index("## Figures")
    assert md.index("main figure") < md.index("section figure") < md.index("**t1**")
    assert md.index("**t1**") < md.index("## Section") < md.index("section text")
    assert_reads_verdict_figures_tables(md, main.html(), n_figures=2)
    alone = section.markdown(str(tmp_path))
    assert "## Details\n\nsection text" in alone


def test_a_missing_figure_is_one_line_and_writes_nothing(tmp_path):
    rep = Report("t", ["v"], [Figure(str(tmp_path / "gone.png"), "gone")])
    with pytest.raises(InputError, match="gone.png: cannot read the report's figure"):
        rep.write(str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == []


def test_save_figure_is_atomic_and_closes(tmp_path):
    plt = pyplot()
    fig, _ = plt.subplots()
    path = save_figure(fig, tmp_path / "f.png", dpi=30)
    assert path == str(tmp_path / "f.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert fig.number not in plt.get_fignums()
    assert sorted(os.listdir(tmp_path)) == ["f.png"]  # no .partial, no lock left behind
    fig, _ = plt.subplots()
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "blocker" / "g.png")
    assert fig.number not in plt.get_fignums()
    assert sorted(os.listdir(tmp_path)) == ["blocker", "f.png"]
