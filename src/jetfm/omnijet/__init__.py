"""The OmniJet-alpha model family (arXiv:2403.05618): the VQ-VAE tokenizer, the GPT backbone and
its heads. The classification head (:mod:`jetfm.omnijet.classifier`) and its training
(:mod:`jetfm.omnijet.classification`) live here; the tokenizer and backbone modules are in
:mod:`jetfm.models`, their loadable model in :mod:`jetfm.train.export`."""
