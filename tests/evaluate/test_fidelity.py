"""The generation-fidelity check and its benchmark's quick chain."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jetfm.evaluate.fidelity import (
    FIDELITY_OBSERVABLES,
    TOP_WINDOW,
    check_long_targets,
    check_targets,
    fidelity,
    fidelity_observables,
    window_fraction,
)

ROOT = Path(__file__).resolve().parents[2]


def _obs(rng, n, mass=172.0, tau32=0.45):
    return {"msoftdrop": rng.normal(mass - 5, 15, n), "mass": rng.normal(mass, 15, n),
            "tau21": rng.normal(0.5, 0.1, n), "tau32": rng.normal(tau32, 0.1, n),
            "d2": rng.normal(1.5, 0.3, n), "n_constituents": rng.poisson(54, n).astype(float)}


def test_fidelity_medians_window_and_floor():
    rng = np.random.default_rng(1)
    ref, gen, floor = _obs(rng, 4000), _obs(rng, 3000, mass=140), _obs(rng, 3000)
    fid = fidelity(ref, gen, ref, floor)
    assert list(fid) == list(FIDELITY_OBSERVABLES)
    assert fid["mass"]["ref_median"] == pytest.approx(np.median(ref["mass"]))
    assert fid["mass"]["gen_median"] == pytest.approx(np.median(gen["mass"]))
    sd = fid["msoftdrop"]
    inside = (ref["msoftdrop"] >= TOP_WINDOW[0]) & (ref["msoftdrop"] < TOP_WINDOW[1])
    assert sd["ref_window"] == pytest.approx(inside.mean())
    assert sd["gen_window"] < sd["ref_window"]
    # the shifted mass is far above its floor, an unshifted observable near it
    assert fid["mass"]["kl"] > 5 * fid["mass"]["kl_floor"]
    assert fid["tau21"]["kl"] < 3 * fid["tau21"]["kl_floor"]


def test_check_targets_limits():
    rng = np.random.default_rng(2)
    ref, floor = _obs(rng, 4000), _obs(rng, 3000)
    good = check_targets(fidelity(ref, _obs(rng, 3000), ref, floor))
    assert good["mass median"]["met"] and good["tau32 median"]["met"]
    fid = fidelity(ref, _obs(rng, 3000, mass=150, tau32=0.6), ref, floor)
    bad = check_targets(fid)
    assert not bad["mass median"]["met"]
    assert bad["mass median"]["value"] == pytest.approx(
        abs(fid["mass"]["gen_median"] / fid["mass"]["ref_median"] - 1))
    assert bad["tau32 median"]["value"] > 0.08 and not bad["tau32 median"]["met"]
    assert not bad["KL tau32 / floor"]["met"]
    assert set(good) == {"mass median", "tau32 median"} | {
        f"KL {n} / floor" for n in ("mass", "tau21", "tau32", "d2", "n_constituents")}


def test_check_long_targets_limits():
    rng = np.random.default_rng(3)
    ref, floor = _obs(rng, 4000), _obs(rng, 3000)
    fid = fidelity(ref, _obs(rng, 3000), ref, floor)
    good = check_long_targets(fid)
    assert set(good) == {"soft-drop mass median [GeV]", "fraction in 150-190 GeV",
                         "tau32 median"}
    assert all(v["met"] for v in good.values())
    # 4 GeV low is inside 5 GeV; 8 GeV low is not, and tau32 0.06 high misses 0.05
    fid = fidelity(ref, _obs(rng, 3000, mass=164, tau32=0.51), ref, floor)
    bad = check_long_targets(fid)
    assert bad["soft-drop mass median [GeV]"]["value"] == pytest.approx(
        abs(fid["msoftdrop"]["gen_median"] - fid["msoftdrop"]["ref_median"]))
    assert not bad["soft-drop mass median [GeV]"]["met"] and not bad["tau32 median"]["met"]
    assert bad["fraction in 150-190 GeV"]["value"] == fid["msoftdrop"]["gen_window"]
    assert bad["fraction in 150-190 GeV"]["at_least"] and "at_least" not in bad["tau32 median"]
    wide = fidelity(ref, {**_obs(rng, 3000), "msoftdrop": rng.normal(167, 60, 3000)}, ref, floor)
    assert not check_long_targets(wide)["fraction in 150-190 GeV"]["met"]


def test_window_fraction_edges():
    assert window_fraction(np.array([149.9, 150.0, 189.9, 190.0])) == 0.5
    assert np.isnan(window_fraction(np.array([])))


def test_fidelity_observables_of_real_jets():
    from jetfm.io import read_jets
    from jetfm.physics.observables import softdrop_mass
    from tests.conftest import REAL

    jets = read_jets(REAL / "jetclass2_sophon_example" / "JetClassII_example.root")[:60]
    obs = fidelity_observables(jets)
    assert set(FIDELITY_OBSERVABLES) <= set(obs)
    np.testing.assert_array_equal(obs["msoftdrop"], softdrop_mass(jets))
    assert (obs["msoftdrop"] <= obs["mass"] + 1e-9).all()


def test_benchmark_quick_chain(tmp_path):
    """benchmarks/fidelity.py --quick: simulate, tokenizer, pre-train, fine-tune, sample and
    compare, end to end; the last line is one JSON object naming each target."""
    out = tmp_path / "fid"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick",
                        "--out", str(out), "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary) == {"quick", "quick_res", "quick_scratch"}
    assert set(summary["quick"]["T=1"]) >= {"mass median", "tau32 median"}
    res = json.loads((tmp_path / "r.json").read_text())
    fid = res[0]["samplers"]["T=1"]["fidelity"]
    assert set(fid) == set(FIDELITY_OBSERVABLES)
    assert all(np.isfinite(fid[o]["kl_floor"]) for o in fid)
    assert "the tokenizer" in r.stdout and "targets:" in r.stdout
    # quick_res: the same pre-training given residual codes, compared with that tokenizer's floor
    assert len(list(out.glob("pretrain_*"))) == 1 and len(list(out.glob("preres_*"))) == 1
    assert "residual codes" in res[1]["cpu_s"] and "16 residual codes" in r.stdout
    res_fid = res[1]["samplers"]["T=1"]["fidelity"]
    assert res_fid["mass"]["ref_median"] == fid["mass"]["ref_median"]
    assert res_fid["tau32"]["tok_median"] != fid["tau32"]["tok_median"]
    # a --pretrained model that has residual codes already is fine-tuned as it is
    given = next(out.glob("preres_*")) / "model"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick",
                        "--out", str(out), "--pretrained", str(given), "--configs", "quick_res",
                        "--json", str(tmp_path / "r2.json")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((tmp_path / "r2.json").read_text())[0]
    assert "residual codes" not in again["cpu_s"] and len(list(out.glob("preres_*"))) == 1
    assert again["samplers"]["T=1"]["fidelity"]["tau32"]["tok_median"] == \
        res_fid["tau32"]["tok_median"]
    # quick_scratch: nothing pre-trained, the tokenizer given the same residual codes (fitted
    # to the same jets with the same seed), the backbone trained on the top jets alone
    scratch = res[2]
    assert scratch["config"] == "quick_scratch" and scratch["val_loss"]["pretrain"] is None
    assert scratch["val_loss"]["finetune"] is not None and len(list(out.glob("tokres_*"))) == 1
    s_fid = scratch["samplers"]["T=1"]["fidelity"]
    assert s_fid["tau32"]["tok_median"] == res_fid["tau32"]["tok_median"]
    # --n-tokenizer: the tokenizer (a new cache entry) is fitted to the first N jets only
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick",
                        "--out", str(out), "--n-tokenizer", "120", "--floor-only"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    from jetfm.train.api import load_pretrained

    fitted = sorted(load_pretrained(str(p / "model")).provenance["tokenizer"]["data"]["n_jets"]
                    for p in out.glob("tokenizer_*"))
    assert fitted == [120, 300]


@pytest.mark.parametrize("args, says", [
    (["--n-tokenizer", "0"], "--n-tokenizer must be at least 1"),
    (["--configs", "nonesuch"], "unknown configurations"),
])
def test_benchmark_refuses_bad_arguments(tmp_path, args, says):
    """benchmarks/fidelity.py: a bad argument is one line and exit 2, before anything is made."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick",
                        "--out", str(tmp_path / "fid"), *args],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert not (tmp_path / "fid").exists()


def test_benchmark_cache_keys_name_the_jets():
    """A stage cached by benchmarks/fidelity.py is keyed by the contents of the jets it was
    trained on: the same settings on other jets never load it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fidelity as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from jetfm.io import read_jets
    from tests.conftest import AOJ_MINI

    jets = read_jets(AOJ_MINI)
    same = read_jets(AOJ_MINI)
    assert bench._jets_id(jets) == bench._jets_id(same)
    assert bench._jets_id(jets[:50]) != bench._jets_id(jets[1:51])
    moved = read_jets(AOJ_MINI)
    moved.constituents[0, 0, 0] += 1.0
    assert bench._jets_id(moved) != bench._jets_id(jets)


def test_backbone_shapes_benchmark():
    """benchmarks/backbone_shapes.py times real training steps: its batches follow the residual
    grammar (a finite loss; a token in a wrong slot would make it infinite), every shape's line
    has a ratio to the recipe's, and a deeper backbone has more parameters."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import backbone_shapes as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from jetfm.omnijet.backbone import JetGPT
    from jetfm.omnijet.config import load_omnijet_config

    cfg = load_omnijet_config("small", bench.RECIPE).backbone
    assert (cfg.residual_codes, cfg.residual_leading, cfg.vocab_size) == (256, 10, 2306)
    seqs = bench.batch_of_jets(cfg, 6, torch.Generator().manual_seed(1))
    assert (seqs[:, 0] == 0).all() and ((seqs == cfg.stop_token).sum(1) == 1).all()
    torch.manual_seed(0)
    assert torch.isfinite(JetGPT(cfg).loss(seqs))
    wrong = seqs.clone()
    wrong[:, 2] = 1  # a code where the first residual token belongs
    assert not torch.isfinite(JetGPT(cfg).loss(wrong))
    # --no-residual: the same backbone without residual codes, its batches codes only
    plain = load_omnijet_config("small", bench.PLAIN).backbone
    assert (plain.residual_codes, plain.vocab_size, plain.fourier_features) == (0, 2050, 32)
    pseqs = bench.batch_of_jets(plain, 6, torch.Generator().manual_seed(1))
    assert ((pseqs > 0) & (pseqs < plain.stop_token)).sum(1).min() >= 40
    assert torch.isfinite(JetGPT(plain).loss(pseqs))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backbone_shapes.py"),
                        "--quick", "--threads", "1"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["shape"] == "n_blocks=4" and rec["ratio"] > 0
    lines = r.stdout.splitlines()
    base = next(x for x in lines if "the recipe" in x)
    deep = next(x for x in lines if x.strip().startswith("n_blocks=4"))
    assert float(deep.split()[1].rstrip("M")) > float(base.split()[6].rstrip("M"))
    for shape, says in (("nope=3", "unknown config key"), ("dim=100", "do not divide")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backbone_shapes.py"),
                              "--quick", "--shape", shape], capture_output=True, text=True,
                             env=env, timeout=120)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and bad.stdout == "" and len(lines) == 1
        assert shape in lines[0] and says in lines[0]


def test_tokenizer_resolution_benchmark(quick_model):
    """benchmarks/tokenizer_resolution.py on real AOJ jets: its exact row is the jets'
    observables in the generator's frame, and noise on the angles widens the jets (the mass
    grows with the noise's rms: independent angular offsets add to every pair's opening)."""
    from jetfm.evaluate.fidelity import fidelity_observables
    from jetfm.io import read_jets
    from jetfm.train.api import load_pretrained
    from tests.conftest import AOJ_MINI

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tokenizer_resolution.py"),
                        quick_model, str(AOJ_MINI), "--n", "80"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(res["rms"]) == {"0-3", "3-10", "10-30", "30-128"} and res["n_jets"] == 80
    jets = read_jets(AOJ_MINI)
    prep = load_pretrained(quick_model).preprocessing
    obs = fidelity_observables(prep.inverse(*prep.forward(jets[len(jets) - 80:])))
    for k in ("mass", "tau21", "tau32"):
        assert res["rows"]["raw"][k] == pytest.approx(float(np.median(obs[k])), rel=1e-9)
    rows = res["rows"]
    assert (rows["raw"]["mass"] < rows["exact + Gaussian 0.06 on both angles"]["mass"]
            < rows["exact + Gaussian 0.12 on both angles"]["mass"])


def test_continuation_keeps_the_prompt_and_measures_soft_distances(quick_model):
    """benchmarks/continuation.py: the first k codes of each jet stay as given, the rest is
    sampled; the soft-constituent distance agrees with a loop over one jet at a time."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import continuation
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from jetfm.io import read_jets
    from jetfm.omnijet.backbone import JetGPT
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.tokenizer import VQVAETokenizer
    from jetfm.train.api import load_pretrained
    from tests.conftest import AOJ_MINI

    model = load_pretrained(quick_model)
    jets = read_jets(AOJ_MINI)[:60]
    feats, mask = model.preprocessing.forward(jets)
    # the quick model, and one whose tokenizer has residual codes for its 3 leading constituents
    cfg = load_omnijet_config("quick", ["tokenizer.residual_codes=8",
                                        "tokenizer.residual_leading=3"])
    torch.manual_seed(0)
    res_tok = VQVAETokenizer(cfg.tokenizer, model.preprocessing)
    res_tok.fit_residual_codebook(feats, mask)
    for tok, backbone in ((model.tokenizer, model.backbone),
                          (res_tok, JetGPT(cfg.backbone).eval())):
        codes = tok.encode_arrays(feats, mask)
        for k in (0, 5):
            c, m = continuation.continue_codes(backbone, tok, codes, mask, k, seed=1, max_new=40)
            n_given = np.minimum(mask.sum(1), k)
            for i in range(len(c)):
                np.testing.assert_array_equal(c[i, :n_given[i]], codes[i, :n_given[i]])
            assert m.sum(1).max() <= 40 and (m[:, :-1] >= m[:, 1:]).all()  # no holes
        again = continuation.continue_codes(backbone, tok, codes, mask, 5, seed=1, max_new=40)
        np.testing.assert_array_equal(again[0], c)  # seeded
    jets = model.preprocessing.inverse(feats, mask)  # the generator's frame: eta_rel, phi_rel
    got = continuation.soft_distance(jets)
    assert np.isfinite(got).sum() > 20
    mid = continuation.soft_distance(jets, 3, 10)  # the 4th to 10th against the 3 leading
    for dist, n_hard, upto in ((got, continuation.N_HARD, 128), (mid, 3, 10)):
        for i in range(0, 60, 7):
            n = int(jets.mask[i].sum())
            pt, eta, phi = (jets.c(x)[i, :n] for x in ("pt", "eta_rel", "phi_rel"))
            order = np.argsort(-pt, kind="stable")
            pt, eta, phi = pt[order], eta[order], phi[order]
            if n <= n_hard:
                assert np.isnan(dist[i])
                continue
            d = [min(np.hypot(eta[j] - eta[h], phi[j] - phi[h]) for h in range(n_hard))
                 for j in range(n_hard, min(n, upto))]
            w = pt[n_hard:upto]
            assert dist[i] == pytest.approx(np.dot(w, d) / w.sum(), rel=1e-6)
    # the leading-constituent table: the jets cut to their 3 hardest another way, and all of them
    from jetfm.evaluate.fidelity import fidelity_observables

    prof = continuation.leading_profile(jets, [3, 500])
    three = fidelity_observables(jets.sort_by(jets.c("pt")).truncate(3))
    full = fidelity_observables(jets)
    for key in ("tau32", "tau21", "mass"):
        assert prof[3][key] == pytest.approx(np.median(three[key]), rel=1e-6)
        assert prof[500][key] == pytest.approx(np.median(full[key]), rel=1e-6)
    assert prof[500]["pt_fraction"] == pytest.approx(1.0)
    assert 0 < prof[3]["pt_fraction"] < 1
    # how the three leading constituents lie: quartiles of d12 and d3, against one jet at a time
    d12, d3 = [], []
    for i in range(len(jets)):
        n = int(jets.mask[i].sum())
        if n < 3:
            continue
        pt, eta, phi = (jets.c(x)[i, :n] for x in ("pt", "eta_rel", "phi_rel"))
        a, b, c = np.argsort(-pt, kind="stable")[:3]
        d12.append(np.hypot(eta[a] - eta[b], phi[a] - phi[b]))
        d3.append(min(np.hypot(eta[c] - eta[a], phi[c] - phi[a]),
                      np.hypot(eta[c] - eta[b], phi[c] - phi[b])))
    dist = continuation.leading_distances(jets)
    np.testing.assert_allclose(dist["d12"], np.quantile(d12, [0.25, 0.5, 0.75]), rtol=1e-6)
    np.testing.assert_allclose(dist["d3"], np.quantile(d3, [0.25, 0.5, 0.75]), rtol=1e-6)
    assert dist["d3"][0] < dist["d12"][2]
    # raw JetClass jets carry deta, dphi instead
    from tests.conftest import JETCLASS2_ROOT

    raw = read_jets(JETCLASS2_ROOT)
    got = continuation.leading_distances(raw)
    assert all(0 <= q[0] <= q[1] <= q[2] < 1.5 for q in got.values())


def test_continuation_refuses_a_model_without_backbone(tmp_path):
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.omnijet.tokenizer import VQVAETokenizer
    from tests.conftest import AOJ_MINI

    cfg = load_omnijet_config("quick")
    tok_only = OmniJetModel(cfg, tokenizer=VQVAETokenizer(cfg.tokenizer,
                                                          cfg.preprocessing.build()).eval()
                            ).save_pretrained(str(tmp_path / "tok"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "continuation.py"), tok_only,
                        str(AOJ_MINI)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and tok_only in lines[0] and "no backbone" in lines[0]


def test_residual_codes_benchmark(quick_model):
    """benchmarks/residual_codes.py tokenizer: residual codes fitted to real AOJ jets shrink the
    leading constituents' error; its raw row is the jets' own observables."""
    from tests.conftest import AOJ_MINI

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "residual_codes.py"),
                        "tokenizer", "--model", quick_model, "--fit", str(AOJ_MINI),
                        "--jets", str(AOJ_MINI), "--n", "80", "--grid", "4:16,4:64",
                        "--rms-leading", "4"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])["rows"]
    plain = np.array(rows["tokenized, no residual codes"]["rms"])
    r16 = np.array(rows["residual codes: 16 for the 4 leading"]["rms"])
    r64 = np.array(rows["residual codes: 64 for the 4 leading"]["rms"])
    assert (r64 < r16).all() and (r16 < plain).all() and rows["raw"]["rms"] == [0, 0, 0]


def test_fidelity_refuses_a_data_folder_with_too_few_jets(tmp_path):
    """A --data folder simulated for a smaller chain: one line naming the file, exit 2, nothing
    trained (the files are real: the AOJ and JetClass-II samples)."""
    from tests.conftest import AOJ_MINI, JETCLASS2_ROOT

    data = tmp_path / "data"
    data.mkdir()
    (data / "aoj_like.h5").symlink_to(AOJ_MINI)
    (data / "top.root").symlink_to(JETCLASS2_ROOT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--data",
                        str(data), "--out", str(tmp_path / "out"), "--n-pretrain", "10",
                        "--n-top", "100000"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "top.root" in lines[0] and "needs 100000" in lines[0]
    assert not any((tmp_path / "out").glob("tokenizer_*"))


def test_fidelity_refuses_a_tokenizer_beside_a_pretrained_model(tmp_path):
    """--pretrained brings its own tokenizer: another one beside it is one line, exit 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick",
                        "--out", str(tmp_path / "out"), "--pretrained", "some/model",
                        "--tokenizer", "other/model"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pretrained brings its own tokenizer" in lines[0]


def test_compare_models_lines_per_model_seed_and_file(quick_model, tmp_path):
    """benchmarks/compare_models.py: one row per model, sampling seed and data file; one
    model's sample is the same against every file (its medians), the references differ."""
    from tests.conftest import AOJ_MINI, JETCLASS2_ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compare_models.py"),
           "--model", quick_model, "--data", str(AOJ_MINI), "--data", str(JETCLASS2_ROOT),
           "--seeds", "2,3", "--n-generated", "40", "--n-reference", "30"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(x["seed"], x["data"]) for x in rows] == [
        (s, str(d)) for s in (2, 3) for d in (AOJ_MINI, JETCLASS2_ROOT)]
    a, b = rows[0]["fidelity"], rows[1]["fidelity"]
    assert a["tau32"]["gen_median"] == b["tau32"]["gen_median"]
    assert a["mass"]["ref_median"] != b["mass"]["ref_median"]
    assert len(r.stdout.strip().splitlines()) == 13 and "seed 3 vs" in r.stdout
    for row in rows:  # the peak's shape: consistent with the medians and window fractions
        fid, peak = row["fidelity"]["msoftdrop"], row["peak"]
        for who, key in (("generated", "gen"), ("reference", "ref"), ("tokenized", "tok")):
            p = peak[who]
            assert p["q25"] <= p["median"] <= p["q75"]
            assert abs(p["median"] - fid[f"{key}_median"]) < 1e-9
            assert abs(p["below"] + p["above"] + fid[f"{key}_window"] - 1) < 1e-9
            lo, mid, hi = p["pt_quartiles"]
            assert 0 < lo <= mid <= hi and len(p["median_softer_harder"]) == 2
    assert rows[0]["peak"]["generated"] == rows[1]["peak"]["generated"]
    assert rows[0]["peak"]["reference"] != rows[1]["peak"]["reference"]
    assert "tau32 median of the jets in 150-190 GeV" in r.stdout
    assert "soft-drop mass median of the softer / harder half" in r.stdout
    bad = subprocess.run(cmd[:2] + ["--model", str(tmp_path / "none"), "--data", str(AOJ_MINI)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "none: no such file" in bad.stderr
