"""What limits a trained CoDAE against the occupancy baseline: how much of each score is the
image's occupancy.

For a trained run (``jetfm anomaly train``) it scores QCD background and signal images and
prints, per score: the mean AUC over each signal's mass points, the Spearman correlation of
the score with ``n_hits`` (lit pixels) on the QCD events, and the mean AUC of the score at fixed
occupancy (the score's rank within QCD events of similar ``n_hits``, i.e. the score divided by
the QCD median at the event's occupancy; the part of it that the occupancy does not explain).
A score that only re-measures occupancy has a correlation near 1 and an AUC near 0.5 at fixed
occupancy.

    python benchmarks/codae_limits.py runs/paper30 --background $R/supervised/valid \\
        --signal $R/supervised/train $R/supervised/valid
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import emit  # noqa: E402
from scipy.stats import spearmanr

from jetfm.codae.scoring import evaluate_scores, score_runs
from jetfm.io.images import LABEL_NAMES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a jetfm anomaly train run folder")
    ap.add_argument("--background", nargs="+", required=True)
    ap.add_argument("--signal", nargs="+", required=True)
    args = ap.parse_args(argv)
    _, _, (bev, bs), (sev, ss) = score_runs([args.run], args.background, args.signal)
    procs = [int(v) for v in sorted(set(sev.labels.tolist()))]
    metrics = evaluate_scores(bs, ss, sev.labels, sev.masses)
    names = [LABEL_NAMES[p] for p in procs]
    print(f"{len(bev)} QCD and {len(sev)} signal events; mean AUC over mass points")
    print(f"{'score':10s}" + "".join(f"{n + ' AUC':>10s}" for n in names)
          + f"{'rho QCD':>9s}" + "".join(f"{'rho ' + n:>9s}" for n in names))
    rows = {}
    for name in bs:
        if name in ("n_tracks",):
            continue
        rho = float(spearmanr(bs[name], bs["n_hits"]).statistic)
        rho_sig = [float(spearmanr(ss[name][sev.labels == p], ss["n_hits"][sev.labels == p])
                         .statistic) for p in procs]
        auc = [metrics[name][LABEL_NAMES[p]]["mean_auc"] for p in procs]
        rows[name] = {"auc": auc, "rho_n_hits_qcd": rho, "rho_n_hits_signal": rho_sig}
        print(f"{name:10s}" + "".join(f"{a:10.3f}" for a in auc) + f"{rho:9.2f}"
              + "".join(f"{r:9.2f}" for r in rho_sig))
    best = max((r for k, r in rows.items() if k != "n_hits"), key=lambda r: np.mean(r["auc"]))
    emit("codae_limits", float(np.mean(best["auc"])), "best mean AUC of a model score",
         float(np.mean(rows["n_hits"]["auc"])),
         float(np.mean(best["auc"])) / float(np.mean(rows["n_hits"]["auc"])),
         rows={k: {kk: (np.round(v, 4).tolist() if isinstance(v, list) else round(v, 4))
                   for kk, v in r.items()} for k, r in rows.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
