"""The main job, end to end: ``jetfm demo`` (what ``make demo`` runs).

Stages, each cached in the run folder (a stage whose output exists is skipped, so an interrupted
demo continues where it stopped; the simulation and the trainings also resume inside a stage):

1. ``data/aoj_like.h5``: AOJ-like QCD jets (Pythia 8 + CMS-like detector), the pre-training set;
2. ``data/top.root``, ``data/qcd.root``: JetClass-like top and QCD jets, the targets;
3. ``tokenizer/``: the VQ-VAE tokenizer trained on the pre-training jets;
4. ``pretrain/``: the GPT backbone pre-trained on them (tokenizer frozen);
5. ``scan/``: the D-scan, fine-tuned against from-scratch arms (:mod:`jetfm.evaluate.scan`);
   ``classify/``: the classification D-scan on the same top and QCD jets, fine-tuned, frozen
   and from-scratch taggers against a BDT on high-level observables
   (:mod:`jetfm.evaluate.classify_scan`);
6. ``figures/``: Figure 1 (pre-training vs targets) and Figure 2 (occupancy), Figures 3/4;
7. ``report.md`` and ``report.html``.

Presets (``src/jetfm/configs/demo_<name>.yaml``): ``quick`` (CI, about 3 minutes on 2 cores),
``default`` (about 20 minutes on 2 cores), ``paper`` (the published configuration, for a GPU
machine: 8192-code tokenizer, 6.6 M-parameter backbone, D = 10^2..10^6, 5 seeds).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field

from jetfm.errors import InputError, write_text_atomic
from jetfm.evaluate.classify_scan import ClassifyScanConfig
from jetfm.evaluate.scan import ScanConfig, check_scan_config

PRESETS = ("quick", "default", "paper")


@dataclass
class DemoConfig:
    """Settings of ``jetfm demo`` (YAML presets ``demo_<preset>.yaml``)."""
    #: AOJ-like pre-training jets to simulate, and their mean pile-up
    n_pretrain: int = 20_000
    pileup: float = 0.0
    #: JetClass-like jets to simulate per target (reference + training pool)
    n_target: int = 6_000
    targets: list[str] = field(default_factory=lambda: ["top", "qcd"])
    #: the targets of the generation D-scan (None: every target); the classification scan
    #: takes top against QCD whatever this holds
    scan_targets: list[str] | None = None
    #: OmniJet-alpha preset (``quick``, ``small``, ``paper``) and dotted overrides, used for the
    #: tokenizer, the pre-training and both arms of the scan
    model_preset: str = "small"
    model_overrides: list[str] = field(default_factory=list)
    #: jets the tokenizer trains on (None: all pre-training jets)
    tokenizer_jets: int | None = None
    scan: ScanConfig = field(default_factory=ScanConfig)
    #: the classification scan, top against QCD (needs both targets; ``classify: false`` skips)
    classify: bool = True
    classification: ClassifyScanConfig = field(default_factory=ClassifyScanConfig)
    #: simulation processes (None: all cores)
    workers: int | None = None
    #: jets read for Figures 1 and 2
    figure_jets: int = 20_000

    def validate(self) -> None:
        from jetfm.config import check_range

        for key in ("n_pretrain", "n_target", "figure_jets"):
            check_range(self, key, 1, 10**9)
        check_range(self, "pileup", 0.0, 200.0)
        check_range(self, "tokenizer_jets", 1, 10**9, allow=(None,))
        check_range(self, "workers", 1, 1024, allow=(None,))


def load_demo_config(preset: str = "default", overrides: tuple[str, ...] = ()) -> DemoConfig:
    """A demo preset by name (quick, default, paper) or YAML path, plus dotted overrides."""
    from jetfm.config import load_config, resolve_preset

    path = preset
    if preset in PRESETS:
        path = resolve_preset(f"demo_{preset}")
    cfg = load_config(DemoConfig, path, list(overrides))
    # both arms of the scan train with the demo's model preset and overrides
    cfg.scan = dataclasses.replace(cfg.scan, preset=cfg.model_preset,
                                   overrides=list(cfg.model_overrides) + list(cfg.scan.overrides))
    cfg.classification = dataclasses.replace(
        cfg.classification, preset=cfg.model_preset,
        overrides=list(cfg.model_overrides) + list(cfg.classification.overrides))
    for t in cfg.targets:
        if t not in ("top", "qcd"):
            raise InputError(f"demo targets are 'top' and 'qcd', got '{t}'")
    for t in cfg.scan_targets or []:
        if t not in cfg.targets:
            raise InputError(f"scan target '{t}' is not one of the demo's targets {cfg.targets}")
    check_scan_config(cfg.scan)  # the model preset with its overrides, before anything runs
    return cfg


def _log(msg: str) -> None:
    print(f"[jetfm demo {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished child processes (simulation workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _check_same_config(out: str, cfg: DemoConfig, seed: int) -> None:
    """A run folder holds one configuration: refuse to mix cached stages of another."""
    import yaml

    path = os.path.join(out, "config.yaml")
    want = {"seed": seed, **dataclasses.asdict(cfg)}
    if os.path.exists(path):
        with open(path) as fh:
            have = yaml.safe_load(fh)
        if have != yaml.safe_load(yaml.safe_dump(want, sort_keys=False)):
            raise InputError("this run folder holds a demo with another configuration or seed; "
                             "use another --out, or add --overwrite to start afresh", out)
    from jetfm.config import save_config

    save_config(want, out)


def model_summary(desc: dict) -> dict[str, str]:
    """The few facts about a model a reader of the report needs, from
    :func:`jetfm.omnijet.model.describe`."""
    c = desc["config"]
    tok, q, bb = c["tokenizer"], c["tokenizer"]["quantizer"], c["backbone"]
    out = {"parameters": ", ".join(f"{k} {v:,}" for k, v in desc["parameters"].items()),
           "tokenizer": f"VQ-VAE, width {tok['width']}, {tok['enc_blocks']}+{tok['dec_blocks']} "
                        f"NormFormer blocks, codebook {q['codebook_size']} x {q['dim']}",
           "backbone": f"GPT, dim {bb['dim']}, {bb['n_blocks']} blocks, {bb['heads']} heads, "
                       f"feed-forward {bb['ff_dim']}",
           "constituents per jet": str(c["preprocessing"]["n_max"])}
    if bb.get("code_features"):
        out["backbone"] += f", code table of {bb['code_features']} features per code"
    if bb.get("fourier_features"):
        out["backbone"] += (f", {bb['fourier_features']} Fourier frequencies of the codes' "
                            "angles")
    if bb.get("kernel_heads"):
        out["backbone"] += (f", {bb['kernel_heads']} anchor-kernel heads over the leading "
                            f"{bb['kernel_anchors']} constituents")
    for stage, p in desc.get("provenance", {}).items():
        loss = p.get("best_val_loss")
        out[f"{stage} training"] = (f"{p.get('n_train')} train / {p.get('n_val')} validation "
                                    f"jets, {p.get('epochs')} epochs, {p.get('steps')} steps, "
                                    "best validation loss "
                                    + (f"{loss:.4f}" if loss is not None else "n/a"))
    return out


#: what the demo writes in its run folder (removed by ``overwrite``)
DEMO_ENTRIES = ("config.yaml", "stage_seconds.json", "data", "tokenizer", "pretrain", "scan",
                "classify", "figures", "report.md", "report.html")


def run_demo(out: str = "runs/demo", preset: str = "default", seed: int = 0,
             overrides: tuple[str, ...] = (), progress: bool = True,
             overwrite: bool = False) -> str:
    """Run (or resume) the demo into ``out``; returns the path of ``report.html``. The folder
    is held exclusively meanwhile; ``overwrite`` starts afresh in a folder of another
    configuration."""
    from jetfm.io.output import run_folder

    cfg = load_demo_config(preset, overrides)
    cfg.scan = dataclasses.replace(cfg.scan, seed=seed)
    cfg.classification = dataclasses.replace(cfg.classification, seed=seed)
    with run_folder(out, {"command": "demo"}, overwrite=overwrite, fresh=DEMO_ENTRIES,
                    command="jetfm demo"):
        return _run_demo(out, cfg, preset, seed, progress)


def _run_demo(out: str, cfg: DemoConfig, preset: str, seed: int, progress: bool) -> str:
    from jetfm.evaluate import plots
    from jetfm.evaluate.classify_scan import classify_report, run_classify_scan
    from jetfm.evaluate.report import build_report
    from jetfm.evaluate.scan import run_scan
    from jetfm.io import count_jets
    from jetfm.omnijet.model import describe
    from jetfm.simulate import simulate_aoj_like, simulate_jetclass_like
    from jetfm.train import api

    _check_same_config(out, cfg, seed)
    t_start, cpu_start = time.perf_counter(), _cpu_seconds()
    # stage times of every run into this folder, so a resumed demo still reports them all
    timing_file = os.path.join(out, "stage_seconds.json")
    stage_s: dict[str, float] = {}
    if os.path.exists(timing_file):
        with open(timing_file) as fh:
            stage_s.update(json.load(fh))

    def stage(name: str, done: bool, fn):
        if done:
            _log(f"{name}: cached")
            return
        _log(f"{name} ...")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        fn()
        stage_s[name] = time.perf_counter() - t0
        stage_s[name + " (CPU)"] = _cpu_seconds() - c0
        _log(f"{name}: {stage_s[name]:.0f} s wall, {stage_s[name + ' (CPU)']:.0f} s CPU")
        write_text_atomic(timing_file, json.dumps(stage_s, indent=1))

    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    aoj = os.path.join(data_dir, "aoj_like.h5")
    stage("simulate aoj-like pre-training jets", os.path.exists(aoj),
          lambda: simulate_aoj_like(cfg.n_pretrain, seed, aoj, workers=cfg.workers,
                                    pileup=cfg.pileup, progress=progress))
    target_files = {}
    for k, t in enumerate(cfg.targets):
        f = os.path.join(data_dir, f"{t}.root")
        target_files[t] = f
        stage(f"simulate jetclass-like {t} jets", os.path.exists(f),
              lambda t=t, f=f, k=k: simulate_jetclass_like(t, cfg.n_target, seed + 1 + k, f,
                                                           workers=cfg.workers,
                                                           progress=progress))
    tok_dir = os.path.join(out, "tokenizer")
    pre_dir = os.path.join(out, "pretrain")
    done = lambda d: os.path.exists(os.path.join(d, "model", "config.json"))  # noqa: E731
    stage("train the tokenizer", done(tok_dir),
          lambda: api.train_tokenizer([aoj], tok_dir, preset=cfg.model_preset,
                                      overrides=cfg.model_overrides, seed=seed,
                                      max_jets=cfg.tokenizer_jets, progress=progress))
    stage("pre-train the backbone", done(pre_dir),
          lambda: api.pretrain([aoj], pre_dir, os.path.join(tok_dir, "model"),
                               preset=cfg.model_preset, overrides=cfg.model_overrides,
                               seed=seed, progress=progress))
    scan_dir = os.path.join(out, "scan")
    scan_targets = cfg.scan_targets or list(cfg.targets)
    scan_cached = os.path.exists(os.path.join(scan_dir, "results.json"))
    stage("D-scan (fine-tuned vs from scratch)", scan_cached,
          lambda: run_scan(os.path.join(pre_dir, "model"),
                           {t: target_files[t] for t in scan_targets}, scan_dir, cfg.scan,
                           progress=progress))
    classify_dir = os.path.join(out, "classify")
    do_classify = cfg.classify and {"top", "qcd"} <= set(target_files)
    if do_classify:
        stage("classification D-scan (top vs QCD)",
              os.path.exists(os.path.join(classify_dir, "results.json")),
              lambda: run_classify_scan(os.path.join(pre_dir, "model"),
                                        {"qcd": target_files["qcd"], "top": target_files["top"]},
                                        classify_dir, cfg.classification, progress=progress))
    fig_dir = os.path.join(out, "figures")
    figures = {"figure1": os.path.join(fig_dir, "figure1_data.png"),
               "figure2": os.path.join(fig_dir, "figure2_occupancy.png")}
    samples = {"AOJ-like (pre-training)": aoj,
               **{f"JetClass-like {t}": f for t, f in target_files.items()}}
    stage("Figure 1", os.path.exists(figures["figure1"]),
          lambda: plots.figure1(samples, figures["figure1"], cfg.figure_jets))
    stage("Figure 2", os.path.exists(figures["figure2"]),
          lambda: plots.figure2([aoj], figures["figure2"], cfg.figure_jets,
                                title="AOJ-like pre-training jets"))
    scan_figs = {f"{t}_{kind}": os.path.join(fig_dir, f"{t}_{kind}.png") for t in scan_targets
                 for kind in ("histograms", "kl_vs_D", "w1_vs_D")}
    stage("Figures 3 and 4", scan_cached and all(os.path.exists(f) for f in scan_figs.values()),
          lambda: plots.scan_figures(scan_dir, fig_dir))
    figures.update({k.replace("_vs_D", ""): v for k, v in scan_figs.items()})
    data = [{"role": "pre-training", "file": aoj, "n_jets": count_jets(aoj),
             "description": "AOJ-like QCD jets: Pythia 8 dijets, CMS-like detector response, "
                            f"anti-kT R = 0.8, pile-up {cfg.pileup:g}"}]
    for t, f in target_files.items():
        data.append({"role": f"target {t}", "file": f, "n_jets": count_jets(f),
                     "description": f"JetClass-like {t} jets (Delphes-like response)"})
    models = {"OmniJet-alpha (tokenizer + pre-trained backbone)":
              model_summary(describe(os.path.join(pre_dir, "model")))}
    wall = {k: v for k, v in stage_s.items() if not k.endswith("(CPU)")}
    cpu = sum(v for k, v in stage_s.items() if k.endswith("(CPU)"))
    notes = [f"Demo preset `{preset}`, seed {seed}. Stage times in seconds, wall clock (as "
             "measured when each stage ran; on a shared machine they depend on the load): "
             + ", ".join(f"{k} {v:.0f}" for k, v in wall.items())
             + f"; sum {sum(wall.values()):.0f} s wall, {cpu:.0f} s CPU (this process and its "
             f"workers). This invocation: {time.perf_counter() - t_start:.0f} s wall, "
             f"{_cpu_seconds() - cpu_start:.0f} s CPU."]
    from jetfm.evaluate.fidelity import fidelity_section

    fid = fidelity_section(scan_dir, fig_dir, scan_targets)
    sections = [fid] if fid is not None else []
    if do_classify:
        sections.append(classify_report(classify_dir, fig_dir))
    _, html_path = build_report(scan_dir, out, figures, data, models, notes=notes,
                                command=f"jetfm demo --preset {preset} --seed {seed} --out {out}",
                                sections=sections)
    return html_path
