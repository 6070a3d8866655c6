"""What limits the OmniJet-alpha tagger on the demo's jets: single-observable AUCs on the raw
jets and on the jets through the tokenizer and back, and one training per ``D:ARM[:KEY=VALUE...]``
spec (an arm of ``jetfm classify train`` with config overrides), all on the classification scan's
held-out test jets and training draws.

    python benchmarks/classify_diagnostics.py runs/demo_default 1000:pretrained \\
        1000:pretrained:classifier.pooling=mean 1000:scratch 200:pretrained:classification.lr=2e-3

``RUN`` is a ``jetfm demo`` folder (``pretrain/model``, ``data/{qcd,top}.root``, and the demo's
config for the model overrides). The last line is one JSON object.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

from jetfm.evaluate.classification import HLF_OBSERVABLES, binary_metrics, hlf_features
from jetfm.evaluate.classify_scan import draw_labelled
from jetfm.evaluate.scan import split_target
from jetfm.io import read_jets
from jetfm.omnijet.classification import (
    LabelledData,
    pad_sequences,
    predict_proba,
    train_classifier,
)
from jetfm.omnijet.model import load_pretrained


def main() -> None:
    run, specs = sys.argv[1], sys.argv[2:]
    with open(os.path.join(run, "config.yaml")) as fh:
        demo = yaml.safe_load(fh)
    cc = demo["classification"]
    model = load_pretrained(os.path.join(run, "pretrain", "model"))
    seqs, obs, tests, pools = [], {"raw": [], "tokenized": []}, [], []
    for name in ("qcd", "top"):
        jets = read_jets(os.path.join(run, "data", f"{name}.root"))
        f, m = model.preprocessing.forward(jets)
        codes = model.tokenizer.encode_arrays(f, m)
        seqs.append(model.tokenizer.sequences(codes, m))
        obs["raw"].append(hlf_features(jets))
        obs["tokenized"].append(hlf_features(model.preprocessing.inverse(
            model.tokenizer.decode_arrays(codes, m), m)))
        t, p = split_target(len(jets), cc["n_test"], cc["seed"])
        tests.append(t)
        pools.append(p)
    seqs = pad_sequences(seqs)
    y = np.concatenate([np.full(len(t), i) for i, t in enumerate(tests)]) == 1  # top = signal
    single = {}
    for kind, per_class in obs.items():
        x = np.concatenate([o[t] for o, t in zip(per_class, tests)])
        aucs = [binary_metrics(y, x[:, i], n_bootstrap=0)["auc"] for i in range(x.shape[1])]
        single[kind] = {n: round(max(a, 1 - a), 4) for n, a in zip(HLF_OBSERVABLES, aucs)}
        print(f"single-observable AUC, {kind:>9} jets: "
              + ", ".join(f"{n} {v:.3f}" for n, v in single[kind].items()))
    test_seqs = np.concatenate([s[t] for s, t in zip(seqs, tests)])
    trained = []
    for spec in specs:
        d, arm, *over = spec.split(":")
        picks = draw_labelled(pools, int(d), cc["seed"], 0)
        labels = np.concatenate([np.full(len(p), i) for i, p in enumerate(picks)])
        data = LabelledData(np.concatenate([s[p] for s, p in zip(seqs, picks)]), labels,
                            ["qcd", "top"])
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            m = train_classifier(model, data, tmp, arm, cc["preset"],
                                 list(cc["overrides"]) + over, seed=1, progress=False)
        r = binary_metrics(y, predict_proba(m, test_seqs)[:, 1], n_bootstrap=0)
        st = m.provenance["classification"]
        trained.append({"spec": spec, "auc": round(r["auc"], 4),
                        "rejection_30": round(r["rejection_30"], 2), "steps": st["steps"],
                        "epochs": st["epochs"], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{spec:50s} AUC {r['auc']:.4f}, rejection at 0.3 {r['rejection_30']:.1f}, "
              f"{st['steps']} steps, {st['epochs']} epochs", flush=True)
    print(json.dumps({"benchmark": "classify_diagnostics", "single_observable_auc": single,
                      "trainings": trained, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
