"""The training API's typed values: a trained model handed back in memory is the model its
directory loads (same weights, same sampled jets), and ``min_steps`` raises the epoch count."""
import numpy as np
import torch
import yaml

from jetfm.io import read_jets
from jetfm.omnijet.config import TrainConfig
from jetfm.omnijet.model import load_pretrained, sample_jets
from jetfm.train import api
from jetfm.train.spec import DataSpec, RunSpec, with_min_steps
from tests.conftest import AOJ_MINI, JETCLASS2_PARQUET


def test_with_min_steps_raises_max_epochs_only_when_needed():
    tc = TrainConfig(batch_size=16, val_fraction=0.1, max_epochs=2)
    assert with_min_steps(tc, 100, 0) is tc
    # 90 training jets: 6 steps an epoch, so 50 steps take 9 epochs
    raised = with_min_steps(tc, 100, 50)
    assert raised.max_epochs == 9 and raised.batch_size == 16 and tc.max_epochs == 2
    assert with_min_steps(tc, 100, 50, min_steps_per_epoch=8).max_epochs == 7
    assert with_min_steps(tc, 100, 5).max_epochs == 2  # the preset's epochs suffice


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_trained_model_in_memory_is_the_exported_model(tokenizer, tmp_path):
    jets = read_jets(JETCLASS2_PARQUET)
    n_train = round(len(jets) * 0.9)
    steps_per_epoch = -(-n_train // 32)  # the quick preset's finetuning batch size
    min_steps = 2 * steps_per_epoch + 1  # one epoch more than the preset's 2
    run = RunSpec(str(tmp_path / "sc"), "quick", seed=3, progress=False, min_steps=min_steps)
    res = api.run_from_scratch(tokenizer, DataSpec(jets=jets), run)
    loaded = load_pretrained(res.model_dir)
    assert _same_weights(res.model.backbone, loaded.backbone)
    assert _same_weights(res.model.tokenizer, loaded.tokenizer)
    assert res.model.config == loaded.config and res.model.provenance == loaded.provenance
    a = sample_jets(res.model, 30, seed=5, progress=False)
    b = sample_jets(loaded, 30, seed=5, progress=False)
    assert np.array_equal(a.constituents, b.constituents) and np.array_equal(a.mask, b.mask)
    # min_steps: the epochs raised in the recorded config and in the run itself
    with open(tmp_path / "sc" / "config.yaml") as fh:
        assert yaml.safe_load(fh)["finetuning"]["max_epochs"] == 3
    stage = loaded.provenance["scratch"]
    assert stage["training"]["max_epochs"] == 3 and stage["min_steps"] == min_steps
    assert stage["steps"] == 3 * steps_per_epoch >= min_steps
    # fine-tuning and the tokenizer hand back the exported model too
    ft = api.run_finetune(res.model_dir, DataSpec(jets=jets[:40]),
                          RunSpec(str(tmp_path / "ft"), "quick", ["finetuning.max_epochs=1"],
                                  seed=4, progress=False))
    assert _same_weights(ft.model.backbone, load_pretrained(ft.model_dir).backbone)
    assert "min_steps" not in ft.model.provenance["finetune"]
    tok = api.run_tokenizer(DataSpec([str(AOJ_MINI)], max_jets=60),
                            RunSpec(str(tmp_path / "tok"), "quick",
                                    ["tokenizer_training.max_epochs=1"], progress=False))
    assert not tok.model.tokenizer.training
    assert _same_weights(tok.model.tokenizer, load_pretrained(tok.model_dir).tokenizer)
