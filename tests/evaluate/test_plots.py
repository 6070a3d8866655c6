"""Figures of the D-scans: tick labels of the log axes readable (no two overlap)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from jetfm.evaluate import plots


def _summary(sizes, scale: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """Seed summaries of a D-scan with metric values spanning less than a decade (the range on
    which matplotlib's log formatter labels minor ticks)."""
    rng = np.random.default_rng(3)
    summary, fits = [], []
    for obs, s in scale.items():
        for arm in ("pretrained", "scratch"):
            for d in sizes:
                m = s * (1 + 0.3 * rng.random()) * (d / sizes[0]) ** -0.1
                summary.append(dict(target="top", metric="kl", reference="tokenized",
                                    observable=obs, arm=arm, D=d, mean=m, std=0.05 * m,
                                    min=0.9 * m, max=1.1 * m))
            fits.append(dict(target="top", metric="kl", reference="tokenized", observable=obs,
                             arm=arm, gamma=0.1, gamma_err=0.02, a=s * sizes[0] ** 0.1))
    return summary, fits


def _overlaps(fig) -> list[tuple[str, str]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the saved figure is closed: draw it on a canvas of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both")
                      if t.get_visible() and t.get_text()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            bad += [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2)
                    if ba.overlaps(bb)]
    return bad


@pytest.mark.parametrize("sizes", [(50, 200, 800), (100, 1000, 10_000), (30, 60, 100, 150)])
def test_scaling_figure_tick_labels_do_not_overlap(tmp_path, monkeypatch, sizes):
    figs = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: figs.append(fig)
                        or save(fig, path, **kw))
    summary, fits = _summary(sizes, {"pt": 0.4, "eta": 0.25, "mass": 2.0, "tau21": 0.07})
    plots.figure_scaling("top", summary, fits, "kl", str(tmp_path / "kl.png"))
    (fig,) = figs
    assert (tmp_path / "kl.png").stat().st_size > 0
    assert _overlaps(fig) == []
    for ax in fig.axes[:4]:
        # the D axis is labelled at the scan's sizes, in plain numbers
        shown = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
        assert shown[0] == f"{sizes[0]:g}" and shown[-1] == f"{sizes[-1]:g}"
        assert set(shown) <= {f"{d:g}" for d in sizes}
        assert len([t for t in ax.yaxis.get_ticklabels() if t.get_text()]) >= 2


def test_log_ticks():
    assert plots.log_ticks(0.05, 3) == pytest.approx([0.05, 0.1, 0.2, 0.5, 1, 2])
    assert plots.log_ticks(0.5, 0.9) == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert plots.log_ticks(1e-5, 0.1) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 0.1])
    narrow = plots.log_ticks(0.22, 0.28)
    assert len(narrow) >= 2 and all(0.22 <= v <= 0.28 for v in narrow)
