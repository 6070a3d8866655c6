"""Figures: matplotlib set up once (no display needed) and one way to save a figure."""
from __future__ import annotations

import os


def pyplot(hep_style: bool = True):
    """``matplotlib.pyplot`` on the Agg backend (works without a display); with ``hep_style``
    mplhep's CMS style, minor ticks off (drawing them on many panels is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if hep_style:
        import mplhep as hep

        plt.style.use(hep.style.CMS)
        plt.rcParams.update({"xtick.minor.visible": False, "ytick.minor.visible": False})
    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 80, tight: bool = False) -> str:
    """Write ``fig`` to ``path`` (format from the name, e.g. ``.png``) atomically (a crash leaves
    no half-written figure; :func:`jetfm.io.output.atomic_output`) and close it; returns the
    path. ``tight``: crop to the drawn content (costs a second draw)."""
    import matplotlib.pyplot as plt

    from jetfm.io.output import atomic_output

    path = os.fspath(path)
    ext = os.path.splitext(path)[1]
    try:
        with atomic_output(path, suffix=ext) as tmp:
            fig.savefig(tmp, dpi=dpi, format=ext.lstrip(".") or None,
                        bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return path


__all__ = ["pyplot", "save_figure"]
