"""The classification head: masking, pooling, loading a pre-trained backbone, saving and loading,
the three arms, and labelled data from the real JetClass-II file."""
import numpy as np
import pytest
import torch

from jetfm.errors import InputError
from jetfm.omnijet.backbone import BackboneConfig, JetGPT
from jetfm.omnijet.classifier import JetClassifier
from jetfm.omnijet.config import ClassifierConfig

BB = BackboneConfig(vocab_size=34, dim=32, n_blocks=2, heads=2, ff_dim=64)


def _seqs(rng, n=6, width=12):
    seqs = np.full((n, width), -1, np.int64)
    for i in range(n):
        k = rng.integers(1, width - 2)
        seqs[i, 0] = 0
        seqs[i, 1:k + 1] = rng.integers(1, 33, k)
        seqs[i, k + 1] = 33
    return torch.as_tensor(seqs)


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_padding_never_changes_the_logits(pooling):
    torch.manual_seed(0)
    clf = JetClassifier(BB, ClassifierConfig(pooling=pooling, dropout=0.0), 3).eval()
    s = _seqs(np.random.default_rng(1))
    wider = torch.cat([s, torch.full((len(s), 7), -1)], 1)
    with torch.no_grad():
        a, b = clf(s), clf(wider)
    assert a.shape == (6, 3)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a jet's logits do not depend on the other jets of the batch
    with torch.no_grad():
        single = clf(s[2:3, :int((s[2] >= 0).sum())])
    torch.testing.assert_close(single, a[2:3], rtol=1e-5, atol=1e-6)


def test_attention_pooling_starts_as_the_masked_mean_of_the_real_tokens():
    torch.manual_seed(0)
    att = JetClassifier(BB, ClassifierConfig(pooling="attention"), 2)
    mean = JetClassifier(BB, ClassifierConfig(pooling="mean"), 2)
    s = _seqs(np.random.default_rng(2))
    h = torch.randn(*s.shape, BB.dim)
    pa, pm = att.pool(h, s), mean.pool(h, s)
    torch.testing.assert_close(pa, pm)
    m = (s >= 0)
    m[:, 0] = False  # not the start token
    want = torch.stack([h[i][m[i]].mean(0) for i in range(len(s))])
    torch.testing.assert_close(pm, want)


def test_pretrained_backbone_loads_and_gives_the_generator_states():
    torch.manual_seed(0)
    gpt = JetGPT(BB).eval()
    clf = JetClassifier(BB, ClassifierConfig(), 2).eval()
    clf.load_backbone(gpt.state_dict())
    s = _seqs(np.random.default_rng(3))
    with torch.no_grad():
        torch.testing.assert_close(clf.body.body(s.clamp_min(0)), gpt.body(s.clamp_min(0)))
    assert not any(k.startswith("body.head") for k in clf.state_dict())


def test_a_backbone_with_anchor_kernels_loads_without_them():
    import dataclasses
    bb = dataclasses.replace(BB, code_features=3, kernel_heads=1)
    torch.manual_seed(0)
    gpt = JetGPT(bb).eval()
    gpt.code_table.normal_()
    clf = JetClassifier(bb, ClassifierConfig(), 2).eval()
    clf.load_backbone(gpt.state_dict())
    s = _seqs(np.random.default_rng(3))
    with torch.no_grad():
        torch.testing.assert_close(clf.body.body(s.clamp_min(0)), gpt.body(s.clamp_min(0)))
    assert not any(k.startswith(("body.head", "body.kernel")) for k in clf.state_dict())


def test_a_multiplicity_backbone_loads_and_padding_still_never_counts():
    """backbone.multiplicity: the classifier's states are the generator's, every token told
    the jet's multiplicity from the sequence itself, padding (-1, fed as the start token) not
    counted."""
    import dataclasses
    bb = dataclasses.replace(BB, multiplicity=True)
    torch.manual_seed(0)
    gpt = JetGPT(bb).eval()
    clf = JetClassifier(bb, ClassifierConfig(dropout=0.0), 2).eval()
    clf.load_backbone(gpt.state_dict())
    s = _seqs(np.random.default_rng(4))
    wider = torch.cat([s, torch.full((len(s), 5), -1)], 1)
    with torch.no_grad():
        torch.testing.assert_close(clf.body.body(s.clamp_min(0)), gpt.body(s.clamp_min(0)))
        torch.testing.assert_close(clf(s), clf(wider), rtol=1e-5, atol=1e-6)
        # the same first tokens in a jet of another multiplicity: other states from the start
        longer = s[:1].clone()
        n = int((longer >= 0).sum())
        longer = torch.cat([longer[:, :n - 1], torch.tensor([[5, 33]])], 1)
        assert not torch.allclose(gpt.body(longer)[0, 0], gpt.body(s[:1, :n])[0, 0])


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        JetClassifier(BB, ClassifierConfig(), 1)


def test_bad_classifier_settings_name_the_key():
    from jetfm.omnijet.config import load_omnijet_config

    with pytest.raises(InputError, match="classifier.pooling"):
        load_omnijet_config("quick", ["classifier.pooling=max"])
    with pytest.raises(InputError, match="classifier.dropout"):
        load_omnijet_config("quick", ["classifier.dropout=1.5"])


# ------------------------------------------------------------------ labelled data, real files
def test_jetclass2_labels_are_read_as_class_names(quick_model, jetclass2_root):
    import uproot

    from jetfm.omnijet.classification import labelled_sequences
    from jetfm.omnijet.model import load_pretrained

    with uproot.open(jetclass2_root) as f:
        raw = f["tree"]["jet_label"].array(library="np")
    qcd = (raw >= 161) & (raw <= 187)
    model = load_pretrained(quick_model)
    lab = labelled_sequences(model, [str(jetclass2_root)], only=["QCD"], others="resonance")
    assert lab.names == ["QCD", "resonance"]
    assert lab.counts() == {"QCD": int(qcd.sum()), "resonance": int((~qcd).sum())}
    np.testing.assert_array_equal(lab.labels, np.where(qcd, 0, 1))
    # every sequence: start, codes, stop, padding
    assert (lab.seqs[:, 0] == 0).all()
    stop = model.codebook_size + 1
    assert ((lab.seqs == stop).sum(1) == 1).all()
    # without --others, the other classes are dropped
    only = labelled_sequences(model, [str(jetclass2_root)], only=["QCD"],
                              classes={"aoj": [str(jetclass2_root)]})
    assert only.names == ["aoj", "QCD"] and only.counts()["QCD"] == int(qcd.sum())


def test_bad_labelled_data(quick_model, jetclass2_root, aoj_mini, tmp_path):
    from jetfm.io.tokens import write_tokens
    from jetfm.omnijet.classification import labelled_sequences
    from jetfm.omnijet.model import load_pretrained

    model = load_pretrained(quick_model)
    with pytest.raises(InputError, match="no labels.*--class"):
        labelled_sequences(model, [str(aoj_mini)])
    with pytest.raises(InputError, match="at least 2 classes"):
        labelled_sequences(model, classes={"a": [str(aoj_mini)]})
    with pytest.raises(InputError, match="not found"):
        labelled_sequences(model, [str(jetclass2_root)], only=["Tbqq"])
    with pytest.raises(InputError, match="no labelled data"):
        labelled_sequences(model)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        labelled_sequences(model, classes={"a": [str(aoj_mini)], "b": [str(empty)]})
    # token files of a tokenizer with another codebook
    toks = tmp_path / "other.h5"
    write_tokens(str(toks), np.array([[0, 5, 65]], np.int64), 64)
    with pytest.raises(InputError, match="64 codes.*32"):
        labelled_sequences(model, classes={"a": [str(aoj_mini)], "b": [str(toks)]})


# ------------------------------------------------------------------ the three arms
@pytest.fixture(scope="module")
def labelled(quick_model, jetclass2_root):
    from jetfm.omnijet.classification import labelled_sequences
    from jetfm.omnijet.model import load_pretrained

    model = load_pretrained(quick_model)
    return model, labelled_sequences(model, [str(jetclass2_root)], only=["QCD"],
                                     others="resonance")


@pytest.mark.parametrize("arm", ["pretrained", "frozen", "scratch"])
def test_arms_train_save_and_load(labelled, tmp_path, arm):
    from jetfm.omnijet.classification import predict_proba, train_classifier
    from jetfm.omnijet.model import OmniJetModel

    base, lab = labelled
    model = train_classifier(base, lab, str(tmp_path / arm), arm, preset="quick", seed=1,
                             progress=False)
    body = model.classifier.body.state_dict()
    base_body = {k: v for k, v in base.backbone.state_dict().items() if not k.startswith("head")}
    same = [torch.equal(body[k], base_body[k]) for k in base_body]
    if arm == "frozen":
        assert all(same)  # only the head trained
    else:
        assert not all(same)
    if arm == "scratch":  # a fresh initialisation, not the pre-trained weights
        assert not torch.equal(body["embed.weight"], base_body["embed.weight"])
    loaded = OmniJetModel.from_pretrained(str(tmp_path / arm))
    assert loaded.classes == ["QCD", "resonance"]
    assert loaded.provenance["classification"]["arm"] == arm
    p1, p2 = predict_proba(model, lab.seqs), predict_proba(loaded, lab.seqs)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1.sum(1), 1.0, rtol=1e-12)


def test_training_is_reproducible_and_resumes_from_its_checkpoint(labelled, tmp_path):
    from jetfm.omnijet.classification import predict_proba, train_classifier

    base, lab = labelled
    a = train_classifier(base, lab, str(tmp_path / "a"), "pretrained", preset="quick", seed=4,
                         progress=False)
    b = train_classifier(base, lab, str(tmp_path / "b"), "pretrained", preset="quick", seed=4,
                         progress=False)
    np.testing.assert_array_equal(predict_proba(a, lab.seqs), predict_proba(b, lab.seqs))
    # a finished run asked again loads its best checkpoint: no further steps
    c = train_classifier(base, lab, str(tmp_path / "a"), "pretrained", preset="quick", seed=4,
                         progress=False)
    assert c.provenance["classification"]["resumed_from"]
    assert c.provenance["classification"]["steps"] == a.provenance["classification"]["steps"]
    np.testing.assert_array_equal(predict_proba(a, lab.seqs), predict_proba(c, lab.seqs))


def test_a_tokenizer_alone_cannot_start_the_pretrained_arm(labelled, tmp_path):
    from jetfm.omnijet.classification import train_classifier
    from jetfm.omnijet.model import OmniJetModel

    base, lab = labelled
    tok_only = OmniJetModel(base.config, tokenizer=base.tokenizer)
    with pytest.raises(InputError, match="no pre-trained backbone"):
        train_classifier(tok_only, lab, str(tmp_path / "x"), "pretrained", preset="quick",
                         progress=False)
    m = train_classifier(tok_only, lab, str(tmp_path / "s"), "scratch", preset="quick",
                         progress=False)
    assert m.classifier is not None
