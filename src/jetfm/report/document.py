"""The report document: parts, and their rendering to Markdown and self-contained HTML.

A :class:`Report` has four parts, rendered in this order whatever order they were filled in:

1. the title;
2. the verdict: paragraphs that answer the report's question from its numbers;
3. the figures (PNG files, inlined as base64 in the HTML);
4. the details: headings, paragraphs, code and tables (each table a collapsed ``<details>``
   element in the HTML, its caption the ``<summary>``), under a heading "Details" unless they
   start with a heading of their own.

Paragraphs may use ``**bold**`` and ```code``` spans. Both outputs are written atomically.
"""
from __future__ import annotations

import base64
import html
import mimetypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from jetfm.errors import InputError
from jetfm.io.output import write_text_atomic


@dataclass(frozen=True)
class Figure:
    """A figure file (PNG) and its caption."""
    path: str
    caption: str


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    """A table: ``caption`` (one line; the summary of the collapsed table in HTML), column
    ``header`` and ``rows`` of cell strings."""
    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def markdown(self) -> str:
        """The table alone (no caption) in Markdown, also readable on a terminal."""
        lines = ["| " + " | ".join(map(_md_cell, self.header)) + " |",
                 "|" + "---|" * len(self.header)]
        return "\n".join(lines + ["| " + " | ".join(map(_md_cell, r)) + " |" for r in self.rows])


Block = Heading | Paragraph | Code | Table


@dataclass
class Report:
    """A report: title, verdict paragraphs, figures, details (see the module docstring)."""
    title: str
    verdict: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    details: list[Block] = field(default_factory=list)

    def add(self, section: Report) -> Report:
        """Append the parts of ``section`` (a report of its own, such as the classification
        scan's) to this report's parts: its verdict to the verdict, its figures to the figures,
        and its details, under a heading of its title, to the details. Returns ``self``."""
        self.verdict += section.verdict
        self.figures += section.figures
        self.details += [Heading(section.title), *section.details]
        return self

    def _details(self) -> list[Block]:
        """The details, under a heading of their own when they do not start with one."""
        if self.details and not isinstance(self.details[0], Heading):
            return [Heading("Details"), *self.details]
        return list(self.details)

    def markdown(self, folder: str) -> str:
        """Markdown with figure links relative to ``folder`` (where the file is written)."""
        out = [f"# {self.title}"]
        if self.verdict:
            out += ["## Verdict", *self.verdict]
        if self.figures:
            out.append("## Figures")
            out += [f"![{f.caption}]({os.path.relpath(f.path, folder)})\n\n*{f.caption}*"
                     for f in self.figures]
        out += [_md_block(b) for b in self._details()]
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        """One HTML page holding everything: style and figures inline."""
        out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
               f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        if self.verdict:
            out.append("<section class='verdict'><h2>Verdict</h2>"
                       + "".join(f"<p>{_inline(p)}</p>" for p in self.verdict) + "</section>")
        if self.figures:
            out.append("<h2>Figures</h2>")
            out += [_html_figure(f) for f in self.figures]
        out += [_html_block(b) for b in self._details()]
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, out_dir: str) -> tuple[str, str]:
        """Write ``out_dir/report.md`` and ``out_dir/report.html``; returns their paths."""
        os.makedirs(out_dir, exist_ok=True)
        md_path = os.path.join(out_dir, "report.md")
        html_path = os.path.join(out_dir, "report.html")
        page = self.html()  # reads every figure first: a missing one leaves both files alone
        write_text_atomic(md_path, self.markdown(out_dir))
        write_text_atomic(html_path, page)
        return md_path, html_path


_CSS = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em;color:#222}"
        ".verdict{background:#f3f7fb;border-left:4px solid #3f90da;padding:.2em 1em}"
        "table{border-collapse:collapse;margin:.5em 0 1em;font-size:90%}"
        "td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
        "th{background:#eee}td:first-child,td:nth-child(2){text-align:left}"
        "details{margin:.4em 0}summary{cursor:pointer;font-weight:bold}"
        "img{max-width:100%;border:1px solid #ddd}figcaption{font-style:italic}"
        "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}")


def _inline(text: str) -> str:
    """A paragraph's ``**bold**`` and ```code``` spans as HTML, everything else escaped."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + b.text
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Code):
        return "```\n" + b.text + "\n```"
    if isinstance(b, Table):
        return f"**{b.caption}**\n\n{b.markdown()}"
    raise TypeError(f"not a report block: {b!r}")


def _html_block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"
    if isinstance(b, Paragraph):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Code):
        return f"<pre>{html.escape(b.text)}</pre>"
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                       for r in b.rows)
        return (f"<details><summary>{html.escape(b.caption)}</summary>"
                f"<table><tr>{head}</tr>{rows}</table></details>")
    raise TypeError(f"not a report block: {b!r}")


def _html_figure(f: Figure) -> str:
    mime = mimetypes.guess_type(f.path)[0] or "image/png"
    try:
        with open(f.path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
    except OSError as e:
        raise InputError(f"cannot read the report's figure ({e.strerror})", f.path) from None
    return (f"<figure><img src='data:{mime};base64,{data}' alt='{html.escape(f.caption)}'>"
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")


__all__ = ["Report", "Figure", "Table", "Heading", "Paragraph", "Code", "Block"]
