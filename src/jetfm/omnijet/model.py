"""The loadable OmniJet-alpha model: ``save_pretrained(dir)`` / ``from_pretrained(dir)``
(:func:`load_pretrained`), and sampling jets from it (:func:`sample_jets`, :func:`sample`).

A model directory holds

- ``config.json``: ``{"format": "jetfm-omnijet", "version": 1, "config": <OmniJetConfig>,
  "has_backbone": bool, "has_classifier": bool, "classes": [...], "parameters": {...},
  "provenance": {...}}`` where the config carries the tokenizer, backbone and classifier sizes
  and the preprocessing constants, ``classes`` names the classifier's outputs in order, and the
  provenance lists the data each stage saw (files, jet counts, seed, preset, overrides);
- ``model.safetensors``: the weights, keys ``tokenizer.*``, ``backbone.*`` (the generator) and
  ``classifier.*`` (:class:`jetfm.omnijet.classifier.JetClassifier`: the backbone body, the
  pooling and the MLP head).

Loading never unpickles: safetensors and JSON only. Files are written under ``.partial`` names
and renamed, ``config.json`` last, so a directory with a config is complete.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from jetfm.config import to_dict
from jetfm.errors import InputError, write_text_atomic
from jetfm.io.output import atomic_output
from jetfm.jets import Jets
from jetfm.omnijet.backbone import JetGPT, generate
from jetfm.omnijet.classifier import JetClassifier
from jetfm.omnijet.config import OmniJetConfig, config_from_dict
from jetfm.omnijet.tokenizer import VQVAETokenizer
from jetfm.physics.features import Preprocessing

FORMAT = "jetfm-omnijet"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
#: config sections a model directory must carry (they define its weights and inputs)
MODEL_SECTIONS = ("preprocessing", "tokenizer", "backbone")


def n_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class OmniJetModel:
    """A tokenizer, optionally a backbone, their config and the provenance of their training.

    Attributes: ``tokenizer`` (:class:`VQVAETokenizer`), ``backbone`` (:class:`JetGPT` or None),
    ``preprocessing`` (:class:`Preprocessing`), ``config`` (:class:`OmniJetConfig`),
    ``classifier`` (:class:`JetClassifier` or None) with ``classes`` (its output names),
    ``provenance`` (dict).
    """

    def __init__(self, config: OmniJetConfig, tokenizer: VQVAETokenizer | None = None,
                 backbone: JetGPT | None = None, provenance: dict | None = None,
                 with_backbone: bool = False, classifier: JetClassifier | None = None,
                 classes: list[str] | None = None):
        self.config = config.resolved()
        self.preprocessing: Preprocessing = self.config.preprocessing.build()
        self.tokenizer = tokenizer or VQVAETokenizer(self.config.tokenizer, self.preprocessing)
        self.backbone = backbone or (JetGPT(self.config.backbone) if with_backbone else None)
        self.classes = list(classes or [])
        if classifier is None and self.classes:
            classifier = JetClassifier(self.config.backbone, self.config.classifier,
                                       len(self.classes))
        self.classifier = classifier
        self.provenance = provenance or {}

    @property
    def codebook_size(self) -> int:
        return self.config.tokenizer.quantizer.codebook_size

    def describe(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "config": to_dict(self.config),
                "has_backbone": self.backbone is not None,
                "has_classifier": self.classifier is not None, "classes": self.classes,
                "parameters": {"tokenizer": n_parameters(self.tokenizer),
                               "backbone": n_parameters(self.backbone),
                               "classifier": n_parameters(self.classifier)},
                "provenance": self.provenance}

    def save_pretrained(self, folder: str) -> str:
        """Write ``config.json`` + ``model.safetensors`` into ``folder``; returns the folder."""
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        tensors = {f"tokenizer.{k}": v.detach().cpu().contiguous()
                   for k, v in self.tokenizer.state_dict().items()}
        for name, mod in (("backbone", self.backbone), ("classifier", self.classifier)):
            if mod is not None:
                tensors.update({f"{name}.{k}": v.detach().cpu().contiguous()
                                for k, v in mod.state_dict().items()})
        wpath, cpath = os.path.join(folder, WEIGHTS), os.path.join(folder, CONFIG)
        if os.path.exists(cpath):
            os.remove(cpath)  # the directory is incomplete until the new config lands
        with atomic_output(wpath) as tmp:
            save_file(tensors, tmp, metadata={"format": FORMAT})
        write_text_atomic(cpath, json.dumps(self.describe(), indent=1))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str, map_location: str = "cpu") -> OmniJetModel:
        """Load a directory written by :meth:`save_pretrained` (or a run folder holding one in
        ``model/``)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        folder = resolve_model_dir(folder)
        cpath, wpath = os.path.join(folder, CONFIG), os.path.join(folder, WEIGHTS)
        try:
            with open(cpath) as fh:
                meta = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"unreadable model config ({err.__class__.__name__})", cpath) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"not a jetfm model config (format != '{FORMAT}')", cpath)
        sections = meta.get("config")
        missing = [s for s in MODEL_SECTIONS if not isinstance(sections, dict) or s not in sections]
        if missing:
            raise InputError(f"model config lacks the section(s) {', '.join(missing)}", cpath)
        try:
            cfg = config_from_dict(sections)
        except InputError as err:
            raise InputError(err.message, cpath) from err
        if not os.path.exists(wpath):
            raise InputError("no such file (model weights)", wpath)
        try:
            with safe_open(wpath, "pt"):  # reads the header only
                pass
        except (SafetensorError, OSError) as err:
            raise InputError(f"corrupted weights file ({err})", wpath) from err
        # the weights must hold at least the bulk of what the config describes (float32), or the
        # config is not theirs: refused before the model is allocated
        least = cfg.tokenizer.n_parameters() + (cfg.backbone.n_parameters()
                                                if meta.get("has_backbone") else 0)
        if os.path.getsize(wpath) < 4 * least:
            raise InputError(f"the config describes at least {least:,} parameters but the weights "
                             f"file holds {os.path.getsize(wpath):,} bytes", cpath)
        classes = meta.get("classes") or [] if meta.get("has_classifier") else []
        if meta.get("has_classifier") and (not isinstance(classes, list) or len(classes) < 2):
            raise InputError("a classifier model config must name at least 2 classes", cpath)
        model = cls(cfg, provenance=meta.get("provenance", {}),
                    with_backbone=bool(meta.get("has_backbone")), classes=classes)
        try:
            tensors = load_file(wpath, device=map_location)
        except (SafetensorError, OSError) as err:
            raise InputError(f"corrupted weights file ({err})", wpath) from err
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise InputError(f"non-finite weights in {len(bad)} tensor(s), first {bad[0]}", wpath)
        parts = {"tokenizer": model.tokenizer, "backbone": model.backbone,
                 "classifier": model.classifier}
        for name, mod in parts.items():
            if mod is None:
                continue
            state = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            try:
                mod.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise InputError(f"weights do not match the config for the {name}: "
                                 f"{str(err).splitlines()[0]}", wpath) from err
        for mod in (model.tokenizer, model.backbone, model.classifier):
            if mod is not None:
                mod.eval()
        return model


def resolve_model_dir(folder: str) -> str:
    """A model directory, or a run folder with the model in ``model/``; InputError otherwise."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError("no such model directory", folder)
    if os.path.exists(os.path.join(folder, CONFIG)):
        return folder
    sub = os.path.join(folder, "model")
    if os.path.exists(os.path.join(sub, CONFIG)):
        return sub
    raise InputError(f"not a model directory (no {CONFIG})", folder)


def load_pretrained(folder: str) -> OmniJetModel:
    """Load a model directory (or a run folder holding ``model/``) without unpickling."""
    return OmniJetModel.from_pretrained(folder)


# ------------------------------------------------------------------------------ sampling
def sample_jets(model: OmniJetModel, n: int, seed: int = 0, batch_size: int | None = None,
                temperature: float | None = None, top_k: int | None = None,
                progress: bool = True, top_p: float | None = None,
                multiplicity: int | None = None) -> Jets:
    """Generate ``n`` jets: cached sampling of token sequences, decoding through the tokenizer,
    jets with fewer than ``sampling.min_constituents`` constituents dropped (as the reference
    does) and replaced by further draws, so exactly ``n`` jets come back. A backbone trained
    with ``backbone.multiplicity`` draws each jet's multiplicity from its training jets'
    histogram, or gives every jet ``multiplicity`` constituents. A backbone that reads its
    jets prong seeds first (``preprocessing.prong_seeds``) generates them so; the jets come
    back in decreasing pT.

    Returns Jets with constituent columns pt, eta_rel, phi_rel, px, py, pz, E (GeV, radians; a
    jet axis at eta = phi = 0) and jet fields pt, eta, phi, mass of the constituent sum.
    Deterministic for a given (seed, batch_size).
    """
    if model.backbone is None:
        raise InputError("model has no backbone: train one with `jetfm pretrain` first")
    if n <= 0:
        raise InputError(f"number of jets must be positive, got {n}")
    sc = model.config.sampling
    if multiplicity is not None:
        cfg = model.config.backbone
        if not cfg.multiplicity:
            raise InputError("this model was trained without backbone.multiplicity: it cannot "
                             "be given the jets' multiplicity")
        top = min(cfg.max_multiplicity, sc.max_new - cfg.residual_leading)
        if not sc.min_constituents <= multiplicity <= top:
            raise InputError(f"multiplicity must be in {sc.min_constituents}..{top} "
                             f"(sampling.min_constituents .. the longest jet), got "
                             f"{multiplicity}")
    need = n * (sc.max_new + 2) * SAMPLE_BYTES_PER_TOKEN
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > memory // 2:
        raise InputError(f"{n} jets would take about {need / 2**30:.0f} GiB in memory, more than "
                         f"half of this machine's {memory / 2**30:.0f} GiB: sample fewer jets "
                         "per run (with different seeds)")
    bs = batch_size or sc.batch_size
    temp = sc.temperature if temperature is None else temperature
    k = sc.top_k if top_k is None else top_k
    tp = sc.top_p if top_p is None else top_p
    got_c, got_m, have, rnd = [], [], 0, 0
    while have < n:
        want = n if rnd == 0 else max(64, math.ceil((n - have) * 1.2))
        # later rounds draw from seeds of their own, so round 0 equals a plain generate(seed)
        s = seed if rnd == 0 else int(np.random.default_rng((seed, rnd)).integers(2 ** 62))
        codes, mask = generate(model.backbone, want, sc.max_new, temp, k, s, bs,
                               progress=progress, top_p=tp, multiplicity=multiplicity)
        keep = (mask.sum(1) >= sc.min_constituents).numpy()
        got_c.append(codes.numpy()[keep])
        got_m.append(mask.numpy()[keep])
        have += int(keep.sum())
        rnd += 1
        if rnd > 50:
            raise InputError(f"the model generates too few jets with >= {sc.min_constituents} "
                             "constituents")
    codes, mask = np.concatenate(got_c)[:n], np.concatenate(got_m)[:n]
    p = max(1, int(mask.sum(1).max()))
    jets = model.tokenizer.decode(codes[:, :p], mask[:, :p])
    if model.preprocessing.prong_seeds >= 2:  # generated prongs first: back to pT order
        jets = jets.sort_by(jets.c("pt"))
    from jetfm.physics.observables import jet_kinematics

    kin = jet_kinematics(jets)
    jets = jets.with_jet_fields(pt=kin["pt"], eta=kin["eta"], phi=kin["phi"], mass=kin["mass"])
    check_generated(jets, sc.min_constituents)
    jets.meta.update({"generator": "jetfm sample (OmniJet-alpha)", "seed": seed,
                      "batch_size": bs, "temperature": temp, "top_k": -1 if k is None else k,
                      "top_p": 1.0 if tp is None else tp,
                      # -1: drawn per jet (or decided by the stop token)
                      "multiplicity": -1 if multiplicity is None else int(multiplicity)})
    return jets


#: memory per generated token while sampling: its code (int64), mask, and the decoded
#: constituent's 7 float32 columns
SAMPLE_BYTES_PER_TOKEN = 8 + 1 + 7 * 4
#: the constituent columns of generated jets that must be finite
MOMENTUM_COLUMNS = ("pt", "eta_rel", "phi_rel", "px", "py", "pz", "E")


def check_generated(jets: Jets, min_constituents: int) -> None:
    """Refuse generated jets that are not physical: a non-finite momentum or jet field, or a jet
    with fewer than ``min_constituents`` constituents (what a model with non-finite weights or
    preprocessing constants produces)."""
    kin = [i for i, c in enumerate(jets.constituent_names) if c in MOMENTUM_COLUMNS]
    real = jets.constituents[jets.mask][:, kin]
    n = jets.mask.sum(1)
    bad = []
    if not np.isfinite(real).all() or not np.isfinite(jets.jet).all():
        bad.append(f"{int((~np.isfinite(real)).any(-1).sum())} constituents with non-finite "
                   "momenta")
    if len(n) and int(n.min()) < min_constituents:
        bad.append(f"{int((n < min_constituents).sum())} jets with fewer than "
                   f"{min_constituents} constituents")
    if bad:
        raise InputError("the model generated invalid jets (" + ", ".join(bad) + "); are its "
                         "weights and preprocessing constants finite?")


def sample(model_dir: str, n: int, seed: int = 0, batch_size: int | None = None,
           temperature: float | None = None, top_k: int | None = None,
           progress: bool = True, top_p: float | None = None,
           multiplicity: int | None = None) -> Jets:
    """Load ``model_dir`` and generate ``n`` jets (see :func:`sample_jets`)."""
    model = load_pretrained(model_dir)
    try:
        jets = sample_jets(model, n, seed, batch_size, temperature, top_k, progress, top_p,
                           multiplicity)
    except InputError as err:
        raise InputError(err.message, model_dir) from err
    jets.meta["model"] = os.path.abspath(model_dir)
    return jets


def describe(model_dir: str) -> dict:
    """What a model is: config, parameter counts, provenance (for ``jetfm info``)."""
    return load_pretrained(model_dir).describe()

