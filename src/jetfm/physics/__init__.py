"""Jet physics in pure NumPy/awkward: constituent features, preprocessing, observables, images."""
