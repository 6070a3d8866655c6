"""Dataset production: CMS PFNano NanoAOD -> AOJ files with Dask
(:mod:`~jetfm.production.builder`, with its worker tasks, manifest and runners), its event
selection and lumi mask, and the deterministic train/val/test split."""
