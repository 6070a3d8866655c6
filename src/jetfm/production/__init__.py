"""Dataset production: CMS PFNano NanoAOD -> AOJ files with Dask
(:mod:`~jetfm.production.builder`), its event selection and lumi mask, and the deterministic
train/val/test split."""
