"""The NormFormer VQ-VAE tokenizer on real AOJ jets."""
import numpy as np
import torch

from jetfm.io import read_jets
from jetfm.io.tokens import codes_to_sequences, sequences_to_codes
from jetfm.omnijet.quantizer import QuantizerConfig
from jetfm.omnijet.tokenizer import TokenizerConfig, VQVAETokenizer
from tests.conftest import AOJ_MINI


def _small_tok(k=32):
    cfg = TokenizerConfig(width=16, enc_blocks=1, dec_blocks=1, heads=2,
                          quantizer=QuantizerConfig(codebook_size=k, dim=3, replace_freq=5))
    return VQVAETokenizer(cfg)


def test_paper_size_parameter_count():
    n = sum(p.numel() for p in VQVAETokenizer().parameters())
    assert 0.80e6 < n < 0.86e6  # about 0.83 M (OmniJet-alpha, arXiv:2403.05618)


def test_encode_decode_real_jets_and_padding_invariance():
    torch.manual_seed(0)
    jets = read_jets(AOJ_MINI)
    tok = _small_tok()
    codes, mask = tok.encode(jets)
    assert codes.shape == (len(jets), 128) and mask.shape == codes.shape
    assert (codes[mask] >= 0).all() and (codes[mask] < 32).all() and (codes[~mask] == -1).all()
    assert mask.sum(1).min() > 0
    rec = tok.decode(codes, mask)
    assert rec.constituent_names[:3] == ("pt", "eta_rel", "phi_rel")
    assert np.array_equal(rec.mask, mask) and (rec.c("pt")[mask] > 0).all()
    # padding content and the padded length do not change a jet's codes
    feats, m = tok.preprocessing.forward(jets)
    f2 = feats.copy()
    f2[~m] = 7.0
    c1 = tok.encode_arrays(feats, m, batch_size=7)
    c2 = tok.encode_arrays(f2, m, batch_size=100)
    assert np.array_equal(c1, c2) and np.array_equal(c1, codes)


def test_loss_ignores_padding_and_training_reduces_it():
    torch.manual_seed(1)
    jets = read_jets(AOJ_MINI)
    tok = _small_tok()
    feats, mask = tok.preprocessing.forward(jets)
    x, m = torch.as_tensor(feats[:, :64]), torch.as_tensor(mask[:, :64])
    tok.eval()
    l1 = tok(x, m)[2]
    x2 = x.clone()
    x2[~m] = 3.0
    assert torch.allclose(l1, tok(x2, m)[2])
    tok.train()
    opt = torch.optim.AdamW(tok.parameters(), 3e-3)
    first = None
    for _ in range(40):
        _, _, loss, parts = tok(x, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else parts["rec_loss"].item()
    assert parts["rec_loss"].item() < 0.5 * first


def test_pt_weighted_loss_weights_real_jets_by_pt_share():
    jets = read_jets(AOJ_MINI)
    tok = _small_tok()
    feats, mask = tok.preprocessing.forward(jets)
    x, m = torch.as_tensor(feats), torch.as_tensor(mask)
    assert tok._loss_weights(x, m) == 1.0  # OmniJet-alpha's loss by default
    tok.cfg.pt_weight = 3.0
    w = tok._loss_weights(x, m)[..., 0].numpy()
    pt = tok.preprocessing.inverse(feats, mask).c("pt")  # GeV of the constituents kept
    for j in range(len(jets)):
        mj = mask[j]
        n = mj.sum()
        share = pt[j, mj] / pt[j, mj].sum()
        # mean weight 1 over each jet's constituents, rising with the pT share
        assert np.isclose(w[j, mj].mean(), 1.0, rtol=1e-5)
        assert np.allclose(w[j, mj], (1 + 3.0 * n * share) / 4.0, rtol=1e-4, atol=1e-6)
    # weighting changes the loss; padding still does not
    tok.eval()
    x2 = x.clone()
    x2[~m] = 3.0
    assert torch.allclose(tok(x, m)[2], tok(x2, m)[2])
    lw = tok(x, m)[3]["rec_loss"]
    tok.cfg.pt_weight = 0.0
    assert not torch.allclose(lw, tok(x, m)[3]["rec_loss"])


def test_sequences_round_trip():
    codes = np.array([[3, 1, -1], [0, -1, -1], [2, 2, 2]])
    mask = codes >= 0
    seq = codes_to_sequences(codes, mask, 4)
    assert seq.tolist() == [[0, 4, 2, 5, -1], [0, 1, 5, -1, -1], [0, 3, 3, 3, 5]]
    c2, m2 = sequences_to_codes(seq, 4, n_max=3)
    assert np.array_equal(c2, codes) and np.array_equal(m2, mask)
