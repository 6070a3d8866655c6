"""One report and figure layer for every report of jetfm.

A report is a :class:`Report`: a title, the verdict (the paragraphs that answer the report's
question), the figures, then the details (headings, paragraphs and tables). It is rendered to
``report.md`` and a self-contained ``report.html`` (figures inline, style inline) from the same
parts, always in that order: a reader sees the answer, then the figures, and opens a table (a
``<details>`` element in HTML) only when wanted. :func:`save_figure` writes every PNG.
"""
from jetfm.report.document import Code, Figure, Heading, Paragraph, Report, Table
from jetfm.report.figures import pyplot, save_figure

__all__ = ["Report", "Figure", "Table", "Heading", "Paragraph", "Code", "pyplot", "save_figure"]
