"""The OmniJet-alpha model family (arXiv:2403.05618): the VQ-VAE tokenizer
(:mod:`~jetfm.omnijet.quantizer`, :mod:`~jetfm.omnijet.tokenizer`), the GPT backbone
(:mod:`~jetfm.omnijet.backbone`) and its classification head (:mod:`~jetfm.omnijet.classifier`,
trained by :mod:`~jetfm.omnijet.classification`); their settings (:mod:`~jetfm.omnijet.config`)
and the loadable model with its sampler (:mod:`~jetfm.omnijet.model`). Training lives in
:mod:`jetfm.train`."""
