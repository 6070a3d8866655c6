"""Generation fidelity per CPU-minute: a fixed, seeded, budgeted chain per configuration.

    python benchmarks/fidelity.py --data runs/demo_default/data \
        --tokenizer runs/demo_default/tokenizer/model --configs baseline,ft_long
    python benchmarks/fidelity.py --quick          # CI-sized: simulates its own small samples
    python benchmarks/fidelity.py --recipe long --out runs/long   # the long recipe (< 2 h)

For every configuration: pre-train the backbone on the AOJ-like jets (``aoj_like.h5``), fine-tune
it on D top jets (``top.root``), sample jets at temperature 1 (plus the configuration's other
sampling options), and compare them with held-out top jets that no training saw. Printed per
configuration: reference / tokenized / generated median, W1 and KL of soft-drop mass, jet mass,
tau21, tau32, D2 and multiplicity, the tokenizer floor (KL of the tokenized reference), the
fraction of jets in 150-190 GeV, the demo's acceptance targets and the CPU seconds of each
stage. Stages are cached in ``--out`` by their settings and the contents of their jets, so
configurations that share a pre-training train it once, and a stage trained on other jets
(another ``--data`` folder) is never taken for this one. The last line is one JSON object.

Configurations are override lists of the training preset (``section.key=value``), see
:data:`CONFIGS`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

#: the code table, and the Fourier features on top of it
CF = ["backbone.code_features=7"]
CF_FOURIER = [*CF, "backbone.fourier_features=32"]


def _chain(model: list[str], pretrain_epochs: int = 6) -> dict:
    """A backbone configuration of the ablations: ``pretrain_epochs`` pre-training epochs,
    fine-tuning up to 40 with patience 4."""
    return {"model": list(model), "pretrain": [f"pretraining.max_epochs={pretrain_epochs}"],
            "finetune": ["finetuning.max_epochs=40", "finetuning.patience=4"]}


#: name -> settings: ``model`` overrides apply to every stage, ``pretrain`` / ``finetune`` to one;
#: ``d``: fine-tuning jets; ``sampling``: extra sampler settings besides temperature 1
CONFIGS: dict[str, dict] = {
    # the default demo's recipe before this benchmark existed: 6 pre-training epochs on 5000 jets,
    # 4 fine-tuning epochs on 800 top jets (about 25 optimiser steps)
    "baseline": {"pretrain": ["pretraining.max_epochs=6"],
                 "finetune": ["finetuning.max_epochs=4"]},
    "ft_long": _chain([]),
    # the code table (mean constituent features and latent vector of each code) feeds the
    # embedding and the output layer
    "code_features": _chain(CF),
    # and random Fourier features of each code's angles (a kernel density around earlier
    # constituents for the output layer)
    "cf_fourier": _chain(CF_FOURIER),
    "cf_fourier64": _chain([*CF, "backbone.fourier_features=64"]),
    # cf_fourier (and cf_fourier64) conditioned on the jet's multiplicity: N drawn from the
    # training jets' histogram, every constituent knowing how many are left, the stop exactly
    # after the last
    "cf_fourier_mult": _chain([*CF_FOURIER, "backbone.multiplicity=true"]),
    "cf_fourier64_mult": _chain([*CF, "backbone.fourier_features=64",
                                 "backbone.multiplicity=true"]),
    # cf_fourier_mult reading each jet prongs first: the 3 prong seeds (the leading
    # constituent, then twice the one of largest pT * dR^2 to the seeds before it), then the
    # rest in decreasing pT (``preprocessing.prong_seeds``). Measured: tau32 0.774 against 0.786,
    # the KL of D2 lower, the mass 5 GeV lower
    "cf_fourier_mult_prongs": _chain([*CF_FOURIER, "backbone.multiplicity=true",
                                      "preprocessing.prong_seeds=3"]),
    # and one anchor-kernel head from the 5th constituent on, in pT order or (_prongs) with the
    # three seeds first: the seeds open the prongs
    # freely, every later constituent is drawn towards the 16 first (the seeds and the hardest).
    # Measured: with the seeds tau32 0.712 (KL 2.7 times the floor), the best of the
    # demo-sized models with the right length, mass 152 GeV (-12 %); in pT order 0.743, 139 GeV
    "cf_kernel_from4_mult": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                                    "backbone.kernel_anchors=16", "backbone.kernel_from=4",
                                    "backbone.multiplicity=true"]),
    "cf_kernel_from4_mult_prongs": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                                           "backbone.kernel_anchors=16", "backbone.kernel_from=4",
                                           "backbone.multiplicity=true",
                                           "preprocessing.prong_seeds=3"]),
    # the seeds alone as the anchors: every constituent after them drawn towards one of the
    # three prong axes. Measured: the mass of cf_kernel_from4_mult_prongs (152 GeV), tau32
    # 0.722, tau21 and D2 closer
    "cf_kernel3_mult_prongs": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                                      "backbone.kernel_anchors=3", "backbone.kernel_from=3",
                                      "backbone.multiplicity=true",
                                      "preprocessing.prong_seeds=3"]),
    # cf_fourier with the learning rate cooled to 0 over the last 30 % of each stage's steps
    # (fine-tuning: the 26 epochs cf_fourier ran before it stopped)
    "cf_fourier_cool": {"model": CF_FOURIER,
                        "pretrain": ["pretraining.max_epochs=6",
                                     "pretraining.schedule=warmup_cooldown",
                                     "pretraining.warmup_steps=20",
                                     "pretraining.cooldown_fraction=0.3"],
                        "finetune": ["finetuning.max_epochs=26", "finetuning.patience=26",
                                     "finetuning.schedule=warmup_cooldown",
                                     "finetuning.warmup_steps=10",
                                     "finetuning.cooldown_fraction=0.3"]},
    # and anchor-kernel heads: every constituent after the first gets the exact Gaussian kernel
    # density around the earlier ones among the 16 leading ones (1 and 2 heads) ...
    "cf_kernel": _chain([*CF_FOURIER, "backbone.kernel_heads=1", "backbone.kernel_anchors=16",
                         "backbone.kernel_from=1"]),
    "cf_kernel2": _chain([*CF_FOURIER, "backbone.kernel_heads=2", "backbone.kernel_anchors=16",
                          "backbone.kernel_from=1"]),
    # ... or from the 5th constituent on (the four leading ones set the prongs freely) ...
    "cf_kernel_from4": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                               "backbone.kernel_anchors=16", "backbone.kernel_from=4"]),
    # ... or only the constituents after the 10 leading ones, around those
    "cf_kernel_late": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                              "backbone.kernel_anchors=10", "backbone.kernel_from=10"]),
    # cf_kernel and cf_kernel2 conditioned on the jet's multiplicity: the kernels placed the
    # constituents where the tokenized jets have them but stopped the jets early (48
    # constituents against 55); here the stop comes after the N-th, N drawn from the histogram.
    # Measured (cf_kernel_mult): the right length, but the hard constituents pulled together
    # and the jets lighter still (129 GeV)
    "cf_kernel_mult": _chain([*CF_FOURIER, "backbone.kernel_heads=1",
                              "backbone.kernel_anchors=16", "backbone.kernel_from=1",
                              "backbone.multiplicity=true"]),
    "cf_kernel2_mult": _chain([*CF_FOURIER, "backbone.kernel_heads=2",
                               "backbone.kernel_anchors=16", "backbone.kernel_from=1",
                               "backbone.multiplicity=true"]),
    # cf_fourier with twice the pre-training epochs: about the CPU time of cf_kernel
    "cf_fourier12": _chain(CF_FOURIER, pretrain_epochs=12),
    # the default demo's backbone recipe: 15 pre-training epochs, fine-tuning up to 20 (patience 3)
    "demo_fourier": {"model": CF_FOURIER,
                     "pretrain": ["pretraining.max_epochs=15"],
                     "finetune": ["finetuning.max_epochs=20", "finetuning.patience=3"]},
    # and three times the pre-training epochs
    "cf_long_pre": {"model": CF,
                    "pretrain": ["pretraining.max_epochs=18", "pretraining.patience=3"],
                    "finetune": ["finetuning.max_epochs=40", "finetuning.patience=4"]},
    # and 4 reflected copies of every training jet
    "cf_augment": {"model": CF,
                   "pretrain": ["pretraining.max_epochs=6", "pretraining.augment=4"],
                   "finetune": ["finetuning.max_epochs=10", "finetuning.patience=3",
                                "finetuning.augment=4"]},
    # the long recipe's backbone (``--recipe long``): the demo's, pre-trained for up to 30 epochs on
    # four times the jets, fine-tuned on five times the top jets; other samplers beside T = 1
    "long": {"model": CF_FOURIER,
             "pretrain": ["pretraining.max_epochs=30", "pretraining.patience=3"],
             "finetune": ["finetuning.max_epochs=20", "finetuning.patience=3"],
             "sampling": {"T=0.9": {"temperature": 0.9}, "top-p 0.95": {"top_p": 0.95}}},
}
#: ``long`` with 256 residual codes for the 10 leading constituents added to the pre-trained
#: model (``residual_codes``: :func:`jetfm.train.api.add_residual_codes`, fitted to the
#: pre-training jets) before fine-tuning; the floor is then that tokenizer's
CONFIGS["long_res"] = {**CONFIGS["long"], "residual_codes": 256}
#: ``long_res`` without pre-training: the same tokenizer with its residual codes, the backbone
#: trained on the top jets alone (``scratch``), for as many epochs as the fine-tuning ran
CONFIGS["long_res_scratch"] = {**CONFIGS["long_res"], "scratch": True,
                               "finetune": ["finetuning.max_epochs=15",
                                            "finetuning.patience=3"]}
#: ``long_res`` for three times the target jets (48 000): at most 8 fine-tuning epochs, about
#: the number of jet passes where the 16 000-jet fine-tuning stopped improving, times 1.6
CONFIGS["long_res48"] = {**CONFIGS["long_res"],
                         "finetune": ["finetuning.max_epochs=8", "finetuning.patience=3"]}
#: ``long_res``'s fine-tuning with the learning rate cooled to 0 over its last 30 % of 16 epochs
#: (the recipe's constant rate ran 19, the best after 15), to be given the recipe's pre-trained
#: model with its residual codes (``--pretrained``)
CONFIGS["long_res_cool"] = {**CONFIGS["long_res"],
                            "finetune": ["finetuning.max_epochs=16", "finetuning.patience=16",
                                         "finetuning.schedule=warmup_cooldown",
                                         "finetuning.warmup_steps=10",
                                         "finetuning.cooldown_fraction=0.3"]}
#: ``long`` pre-trained on five times the AOJ-like jets (``--n-pretrain 100000``) for at most 3
#: epochs (300 000 jet passes, the recipe's 18 x 20 000 less a sixth): fresh jets instead of
#: repeated ones (simulating them costs 5.5 ms of wall time per jet on 2 cores); with
#: ``--residual-codes 256`` the backbone meets its residual codes from the start of
#: pre-training instead of at fine-tuning (recipe ``long_fresh``). Measured: no gain (tau32
#: 0.61-0.62 against the recipe's 0.60, the top jets' codes predicted no better; the validation
#: loss stopped falling after the second pass over the jets)
CONFIGS["long_fresh"] = {**CONFIGS["long"],
                         "pretrain": ["pretraining.max_epochs=3", "pretraining.patience=3"]}
#: ``long_res`` with twice the backbone's depth (4 blocks instead of 2, width unchanged): 1.34
#: times the CPU of a training step (``benchmarks/backbone_shapes.py``), so the epochs are capped
#: (pre-training 20, fine-tuning 18; the recipe's stopped after 18 and 19) to keep the training
#: within 2 hours on an idle 2-core machine
CONFIGS["long_res_deep"] = {**CONFIGS["long_res"],
                            "model": [*CF_FOURIER, "backbone.n_blocks=4"],
                            "pretrain": ["pretraining.max_epochs=20", "pretraining.patience=3"],
                            "finetune": ["finetuning.max_epochs=18", "finetuning.patience=3"]}
#: ``long_res_deep`` with 64 Fourier frequencies instead of 32: a finer angular basis for the
#: output layer (at the demo's size 64 cost no more CPU and brought the leading constituents
#: closer together, ``benchmarks/continuation.py``'s d12 and d3). Measured at the long
#: recipe's size: tau32 0.55 (its KL a third of the recipe's), but jets 5 % lighter, shorter
CONFIGS["long_res_deep64"] = {**CONFIGS["long_res_deep"],
                              "model": [*CF, "backbone.fourier_features=64",
                                        "backbone.n_blocks=4"]}
#: ``long_res_deep64`` conditioned on the jet's multiplicity (``backbone.multiplicity``): its
#: jets came out short and light (52 constituents against 55); here N is drawn from the
#: fine-tuning jets' histogram and each constituent knows how many are left. Measured: the
#: masses back (soft-drop mass median 167 GeV against the reference's 169), tau32 0.55 kept;
#: the ``long`` recipe since 2026-12-02
CONFIGS["long_res_deep64_mult"] = {**CONFIGS["long_res_deep64"],
                                   "model": [*CONFIGS["long_res_deep64"]["model"],
                                             "backbone.multiplicity=true"]}
#: ``long_res_deep64_mult``'s fine-tuning with the learning rate cooled to 0 over its last 30 %
#: of 16 epochs (its constant rate ran 18, the best after 15); given that recipe's pre-trained
#: model with its residual codes (``--pretrained runs/long/preres_*/model``) or from scratch.
#: Measured (benchmarks/RESULTS.md): a lower loss (4.561) and KL of tau32 (0.42-0.66), tau32's
#: median unchanged (0.545-0.548), the soft-drop mass 6-9 GeV lower; not the recipe
CONFIGS["long_res_deep64_mult_cool"] = {**CONFIGS["long_res_deep64_mult"],
                                        "finetune": CONFIGS["long_res_cool"]["finetune"]}
#: the recipe (``long_res``) conditioned on the jet's multiplicity
CONFIGS["long_res_mult"] = {**CONFIGS["long_res"],
                            "model": [*CONFIGS["long_res"]["model"],
                                      "backbone.multiplicity=true"]}
#: whole chains: data sizes, tokenizer settings and configurations (``--recipe``); ``long``:
#: about 75 minutes of training on an idle 2-core machine, 1 h 20 min with the data and the
#: tokenizer (fine-tuning on 16 000 top jets: four times the 4 000 of its first version took the
#: generated jets' tau32 median from 0.735 to 0.63; residual codes with their geometry added
#: before fine-tuning (``long_res``) took it to 0.60; 4 blocks, 64 Fourier frequencies and the
#: multiplicity (``long_res_deep64_mult``) to 0.55, the soft-drop mass median 1.4 GeV from the
#: reference's)
RECIPES: dict[str, dict] = {
    "long": {"n_pretrain": 20000, "n_top": 16800, "d": 16000, "n_generated": 2000,
             "configs": "long_res_deep64_mult",
             "tok_set": ["tokenizer.quantizer.codebook_size=2048", "tokenizer.width=128",
                         "tokenizer.pt_weight=3", "tokenizer_training.batch_size=64",
                         "tokenizer_training.max_epochs=8"]},
}
#: ``long`` with fresh pre-training jets and the residual codes from the start: the same
#: tokenizer (fitted to the first 20 000 of the 100 000 AOJ-like jets, which are the ones
#: ``long`` simulates), residual codes fitted to those too, then configuration ``long_fresh``
RECIPES["long_fresh"] = {**RECIPES["long"], "n_pretrain": 100000, "n_tokenizer": 20000,
                         "residual_codes": 256, "configs": "long_fresh"}
QUICK = {
    "quick": {"pretrain": ["pretraining.max_epochs=2"], "finetune": ["finetuning.max_epochs=3"]},
}
# the same pre-training (cached) given 16 residual codes before fine-tuning
QUICK["quick_res"] = {**QUICK["quick"], "residual_codes": 16}
# and the backbone trained from scratch on the top jets with that tokenizer
QUICK["quick_scratch"] = {**QUICK["quick_res"], "scratch": True}


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def _jets_id(jets) -> str:
    """A digest of the jets' contents, part of every cache key: a stage cached in ``--out`` is
    never taken for one trained on other jets (another ``--data`` folder, say)."""
    h = hashlib.sha1()
    for a in (jets.constituents, jets.mask, jets.jet):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def _cpu() -> float:
    return time.process_time()


def ensure_data(data_dir: str, n_pretrain: int, n_top: int, seed: int, workers: int) -> dict:
    """``{aoj, top}`` file paths in ``data_dir``, simulated when missing (CPU seconds too)."""
    from jetfm.simulate.samples import simulate_aoj_like, simulate_jetclass_like

    os.makedirs(data_dir, exist_ok=True)
    paths = {"aoj": os.path.join(data_dir, "aoj_like.h5"),
             "top": os.path.join(data_dir, "top.root")}
    t = {}
    if not os.path.exists(paths["aoj"]):
        c0 = _cpu()
        simulate_aoj_like(n_pretrain, seed, paths["aoj"], workers=workers, progress=False)
        t["simulate aoj"] = _cpu() - c0
    if not os.path.exists(paths["top"]):
        c0 = _cpu()
        simulate_jetclass_like("top", n_top, seed + 1, paths["top"], workers=workers,
                               progress=False)
        t["simulate top"] = _cpu() - c0
    from jetfm.io import count_jets

    for key, want in (("aoj", n_pretrain), ("top", n_top)):
        have = count_jets(paths[key])
        if have < want:
            print(f"fidelity.py: {paths[key]}: {have} jets, the chain needs {want}; give "
                  "another --data folder (it simulates them there)", file=sys.stderr)
            sys.exit(2)
    return {"paths": paths, "cpu": t}


def run_config(name: str, spec: dict, args, aoj, aoj_id: str, tok_fit: tuple, tok_dir: str,
               held_for, top_pool, preset: str) -> dict:
    """Pre-train on the jets ``aoj`` (their digest ``aoj_id``; or take ``--pretrained``),
    optionally add residual codes (fitted to ``tok_fit``: the tokenizer's jets and their digest,
    as the command line's are), fine-tune on ``top_pool``, sample and compare;
    ``held_for(model_dir)``: the held-out observables and floor of that model's tokenizer."""
    from jetfm.evaluate.fidelity import (
        check_long_targets,
        check_targets,
        fidelity,
        fidelity_observables,
    )
    from jetfm.omnijet.model import sample_jets
    from jetfm.train import api

    model = list(spec.get("model", []))
    pre_over = model + list(spec.get("pretrain", []))
    ft_over = model + list(spec.get("finetune", []))
    cpu: dict[str, float] = {}
    pre_dir = os.path.join(args.out, "pretrain_" + _key(preset, pre_over, tok_dir, args.seed,
                                                         args.n_pretrain, aoj_id))
    c0, w0 = _cpu(), time.perf_counter()
    scratch = bool(spec.get("scratch"))
    if scratch:  # no pre-training: the backbone is trained on the top jets alone
        pre_dir = pre_model = args.pretrained or tok_dir
    elif args.pretrained:  # given: its backbone and tokenizer, nothing pre-trained here
        pre_dir = pre_model = args.pretrained
    else:
        pre_model = api.pretrain([], pre_dir, tok_dir, preset=preset, overrides=pre_over,
                                 seed=args.seed, jets=aoj, progress=False)
    cpu["pretrain"], wall = _cpu() - c0, {"pretrain": time.perf_counter() - w0}
    r_codes = int(spec.get("residual_codes", 0))
    if r_codes and api.load_pretrained(pre_model).tokenizer.residual_codes:
        r_codes = 0  # a --pretrained model that has them already: fine-tuned as it is
    if r_codes:  # the pre-trained model (or the tokenizer) given residual codes, once
        c0 = _cpu()
        res_dir = os.path.join(args.out, ("tokres_" if scratch else "preres_") + _key(
            pre_dir, r_codes, args.residual_leading, args.seed, tok_fit[1]))
        plain, pre_model = pre_model, os.path.join(res_dir, "model")
        if not os.path.exists(os.path.join(pre_model, "model.safetensors")):
            api.add_residual_codes(str(plain), [], res_dir, r_codes, args.residual_leading,
                                   args.seed, jets=tok_fit[0])
        pre_dir = res_dir
        cpu["residual codes"] = _cpu() - c0
        print_floor(held_for(pre_model), f"{name}: the tokenizer with {r_codes} residual codes")
    held = held_for(str(pre_model) if r_codes else tok_dir)
    d = int(spec.get("d", args.d))
    ft_dir = os.path.join(args.out, "finetune_" + _key(pre_dir, ft_over, d, args.seed,
                                                       _jets_id(top_pool[:d])))
    c0, w0 = _cpu(), time.perf_counter()
    train = api.train_from_scratch if scratch else api.finetune
    ft_model = train(str(pre_model), [], ft_dir, preset=preset, overrides=ft_over,
                     seed=args.seed + 1, jets=top_pool[:d], progress=False)
    cpu["finetune"], wall["finetune"] = _cpu() - c0, time.perf_counter() - w0
    out = {"config": name, "spec": spec, "cpu_s": cpu, "wall_s": wall, "samplers": {}}
    loaded = api.load_pretrained(ft_model)
    out["val_loss"] = {s: loaded.provenance.get(s, {}).get("best_val_loss")
                       for s in ("pretrain", "finetune")}
    if scratch:  # the top-jet training's, in the fine-tuning's place
        out["val_loss"]["finetune"] = loaded.provenance.get("scratch", {}).get("best_val_loss")
    samplers = {"T=1": {}} | dict(spec.get("sampling", {}))
    for sname, skw in samplers.items():
        c0 = _cpu()
        gen = sample_jets(loaded, args.n_generated, seed=args.seed + 2, progress=False,
                              **skw)
        obs = fidelity_observables(gen)
        fid = fidelity(held["raw"], obs, held["tokenized"], held["floor"], seed=args.seed)
        out["samplers"][sname] = {"fidelity": fid, "targets": check_targets(fid),
                                  "long_targets": check_long_targets(fid),
                                  "sample_cpu_s": _cpu() - c0}
    return out


def print_floor(held: dict, title: str = "the tokenizer") -> None:
    """The tokenizer's own effect: held-out jets raw vs through the tokenizer, and the floor."""
    from jetfm.evaluate.fidelity import fidelity, fidelity_lines

    fid = fidelity(held["raw"], held["tokenized"], held["tokenized"], held["floor"])
    print(f"--- {title}: held-out jets through it ('gen' = tokenized held-out jets)")
    for line in fidelity_lines(fid):
        print("  " + line)


def print_result(res: dict) -> None:
    from jetfm.evaluate.fidelity import fidelity_lines

    cpu = res["cpu_s"]
    print(f"\n=== {res['config']}: pre-training {cpu['pretrain']:.0f} CPU-s, fine-tuning "
          f"{cpu['finetune']:.0f} CPU-s"
          + (f", residual codes {cpu['residual codes']:.0f} CPU-s" if "residual codes" in cpu
             else "") + "; best validation loss pre-training "
          f"{res['val_loss']['pretrain']}, fine-tuning {res['val_loss']['finetune']}")
    for sname, s in res["samplers"].items():
        print(f"--- sampling {sname} ({s['sample_cpu_s']:.0f} CPU-s)")
        for line in fidelity_lines(s["fidelity"]):
            print("  " + line)
        print("  targets: " + _target_line(s["targets"]))
        print("  long-recipe targets: " + _target_line(s["long_targets"]))


def _target_line(targets: dict) -> str:
    """``name value<=limit; ...`` (``>=`` for a target that is a floor, ``at_least``)."""
    parts = []
    for k, v in targets.items():
        ok, miss = (">=", "<") if v.get("at_least") else ("<=", ">")
        parts.append(f"{k} {v['value']:.3g}{ok if v['met'] else miss}{v['limit']:g}")
    return "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized chain (simulates its data)")
    ap.add_argument("--recipe", choices=sorted(RECIPES),
                    help="a whole chain: sets the data sizes, tokenizer settings and "
                         "configurations (an option given too overrides it)")
    ap.add_argument("--data", help="folder with aoj_like.h5 and top.root (simulated if missing)")
    ap.add_argument("--tokenizer", help="a trained tokenizer (model folder); trained if absent")
    ap.add_argument("--pretrained", help="a pre-trained model (folder) to fine-tune instead of "
                                         "pre-training one; its tokenizer is used")
    ap.add_argument("--out", default="runs/fidelity", help="cache folder of the trained models")
    ap.add_argument("--configs", help="comma-separated names of CONFIGS (default: all)")
    ap.add_argument("--preset", default=None, help="model preset (default small; quick: quick)")
    ap.add_argument("--n-pretrain", type=int, default=5000)
    ap.add_argument("--n-tokenizer", type=int, default=None, metavar="N",
                    help="fit the tokenizer to the first N pre-training jets (default: all)")
    ap.add_argument("--n-top", type=int, default=1800, help="top jets simulated if missing")
    ap.add_argument("--n-reference", type=int, default=800, help="held-out top jets")
    ap.add_argument("--d", type=int, default=800, help="top jets to fine-tune on")
    ap.add_argument("--n-generated", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tok-set", action="append", default=[], metavar="KEY=VALUE",
                    help="tokenizer training override (when the tokenizer is trained here)")
    ap.add_argument("--residual-codes", type=int, default=0, metavar="R",
                    help="give the tokenizer R residual codes for its leading constituents "
                         "(fitted here to the pre-training jets; tokenizer.residual_codes)")
    ap.add_argument("--residual-leading", type=int, default=10, metavar="K",
                    help="how many leading constituents get a residual code (default 10)")
    ap.add_argument("--floor-only", action="store_true",
                    help="train or load the tokenizer, print its floor, train nothing else")
    ap.add_argument("--json", help="write the results to this file too")
    args = ap.parse_args(argv)
    if args.recipe:
        defaults = ap.parse_args([])
        for key, value in RECIPES[args.recipe].items():
            if getattr(args, key) == getattr(defaults, key):
                setattr(args, key, value)
    if args.quick:
        args.n_pretrain, args.n_top, args.n_reference = 300, 260, 100
        args.d, args.n_generated = 150, 200
    preset = args.preset or ("quick" if args.quick else "small")
    configs = QUICK if args.quick else CONFIGS
    names = args.configs.split(",") if args.configs else list(configs)
    if args.pretrained and (args.tokenizer or args.residual_codes):
        print("fidelity.py: --pretrained brings its own tokenizer: not with --tokenizer or "
              "--residual-codes", file=sys.stderr)
        return 2
    if args.n_tokenizer is not None and args.n_tokenizer < 1:
        print(f"fidelity.py: --n-tokenizer must be at least 1, got {args.n_tokenizer}",
              file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in configs]
    if unknown:
        print(f"fidelity.py: unknown configurations {unknown}; known: {list(configs)}",
              file=sys.stderr)
        return 2
    import torch

    from jetfm.evaluate.fidelity import held_out_sets
    from jetfm.evaluate.scan import split_target
    from jetfm.io import read_jets
    from jetfm.train import api

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    data = ensure_data(args.data or os.path.join(args.out, "data"), args.n_pretrain, args.n_top,
                       args.seed, args.workers)
    paths = data["paths"]
    aoj = read_jets(paths["aoj"], stop=args.n_pretrain)
    aoj_id = _jets_id(aoj)
    # the tokenizer (and its residual codes) is fitted to the first --n-tokenizer of them
    n_tok = min(args.n_tokenizer or args.n_pretrain, args.n_pretrain)
    tok_jets = aoj[:n_tok]
    tok_id = aoj_id if n_tok == len(aoj) else _jets_id(tok_jets)
    tok_dir = args.pretrained or args.tokenizer
    tok_cpu = 0.0
    if tok_dir is None:
        tok_dir = os.path.join(args.out, "tokenizer_" + _key(preset, args.tok_set, args.seed,
                                                             n_tok, tok_id))
        c0 = _cpu()
        tok_dir = api.train_tokenizer([], tok_dir, preset=preset, seed=args.seed,
                                      overrides=args.tok_set, jets=tok_jets, progress=False)
        tok_cpu = _cpu() - c0
    if args.residual_codes:
        c0 = _cpu()
        tok_dir = api.add_residual_codes(
            tok_dir, [], os.path.join(args.out, "tokres_" + _key(
                tok_dir, args.residual_codes, args.residual_leading, args.seed, n_tok, tok_id)),
            args.residual_codes, args.residual_leading, args.seed, jets=tok_jets)
        tok_cpu += _cpu() - c0
    top = read_jets(paths["top"])
    ref_idx, pool = split_target(len(top), args.n_reference, args.seed)
    top_pool = top[np.sort(pool)]
    helds: dict[str, dict] = {}

    def held_for(model_dir: str) -> dict:
        """The held-out jets' observables, raw and through ``model_dir``'s tokenizer, and the
        floor: training-pool jets through it, as many as generated."""
        if model_dir not in helds:
            helds[model_dir] = held_out_sets(
                top[ref_idx], top_pool[-min(len(top_pool), args.n_generated):],
                api.load_pretrained(model_dir))
        return helds[model_dir]

    held = held_for(tok_dir)
    print(f"data: {paths}; tokenizer {tok_dir} ({tok_cpu:.0f} CPU-s); "
          f"{len(ref_idx)} held-out top jets, {len(pool)} in the training pool; "
          f"torch threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.1f}")
    print_floor(held)
    if args.floor_only:
        return 0
    results = []
    for name in names:
        res = run_config(name, configs[name], args, aoj, aoj_id, (tok_jets, tok_id), tok_dir,
                         held_for, top_pool, preset)
        res["tokenizer_cpu_s"] = tok_cpu
        res["data_cpu_s"] = data["cpu"]
        print_result(res)
        results.append(res)
    summary = {r["config"]: {"cpu_s": r["cpu_s"],
                             **{s: {k: v["met"] for k, v in x["targets"].items()}
                                for s, x in r["samplers"].items()}} for r in results}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
