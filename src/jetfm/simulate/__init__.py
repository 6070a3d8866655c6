"""jetfm.simulate: the built-in simulation (Pythia 8 + a parametric detector response + FastJet).

- :func:`simulate_aoj_like` / :func:`simulate_jetclass_like`: whole samples written to files.
- :func:`generate_jets` with :func:`aoj_like_spec` / :func:`jetclass_like_spec`: jets in memory.
- :mod:`jetfm.simulate.detector`: the detector response as a reusable function
  (:func:`~jetfm.simulate.detector.cms_like_candidates`, parameters in
  :class:`~jetfm.simulate.detector.DetectorParams`).
- :mod:`jetfm.simulate.pythia`: process settings and event generation as NumPy arrays.
"""
from jetfm.simulate.detector import (
                                     CMS_LIKE,
                                     DELPHES_LIKE,
                                     IDEAL,
                                     DetectorParams,
                                     cms_like_candidates,
                                     delphes_like_candidates,
                                     detector_response,
                                     puppi_weights,
)
from jetfm.simulate.samples import (
                                     SampleSpec,
                                     aoj_like_spec,
                                     generate_jets,
                                     jetclass_like_spec,
                                     simulate_aoj_like,
                                     simulate_jetclass_like,
)

__all__ = ["CMS_LIKE", "DELPHES_LIKE", "IDEAL", "DetectorParams", "SampleSpec", "aoj_like_spec",
           "cms_like_candidates", "delphes_like_candidates", "detector_response", "generate_jets",
           "jetclass_like_spec", "puppi_weights", "simulate_aoj_like", "simulate_jetclass_like"]
