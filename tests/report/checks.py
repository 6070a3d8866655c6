"""What every report of jetfm must read like, as one check for the tests of each report."""
from __future__ import annotations

import base64
import re


def assert_reads_verdict_figures_tables(md: str, page: str, n_figures: int) -> None:
    """``md`` / ``page`` (report.md / report.html): the verdict first, then the ``n_figures``
    figures, then the tables; every HTML table collapsed in a ``<details>`` element whose
    ``<summary>`` names it; the HTML self-contained (every figure inline, nothing fetched)."""
    # Markdown: verdict paragraphs, the figures, and only then tables
    verdict, figures = md.index("## Verdict\n"), md.index("## Figures\n")
    images = [m.start() for m in re.finditer(r"^!\[", md, re.M)]
    tables = [m.start() for m in re.finditer(r"^\|", md, re.M)]
    assert md.startswith("# ") and verdict < figures < images[0]
    assert md[verdict:figures].strip() != "## Verdict", "empty verdict"
    assert len(images) == n_figures
    assert tables and min(tables) > max(images), "a table before a figure"
    # HTML: the same order; tables only inside <details><summary>caption</summary>
    h_verdict = page.index("<h2>Verdict</h2>")
    h_images = [m.start() for m in re.finditer(r"<img ", page)]
    h_tables = [m.start() for m in re.finditer(r"<table>", page)]
    assert h_verdict < page.index("<p>", h_verdict) < h_images[0]
    assert len(h_images) == n_figures
    assert h_tables and min(h_tables) > max(h_images)
    collapsed = re.findall(r"<details><summary>[^<]+</summary><table>.*?</table></details>",
                           page, re.S)
    assert len(collapsed) == len(h_tables), "a table outside <details>"
    # self-contained: every source inline, no links to other files or sites
    sources = re.findall(r"src=['\"]([^'\"]*)", page)
    assert len(sources) == n_figures and all(s.startswith("data:image/png;base64,")
                                             for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r"<link|<script|href=|url\(|@import", page)
