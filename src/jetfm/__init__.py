"""jetfm: jet foundation models on open LHC data.

AspenOpenJets datasets, the OmniJet-alpha tokenizer and generative transformer, JetClass
fine-tuning, the field's metrics, and the CoDAE dark-shower anomaly detector.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jetfm")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from jetfm.errors import InputError
from jetfm.jets import Jets

__all__ = ["Jets", "InputError", "__version__"]
