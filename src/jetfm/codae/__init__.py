"""The CoDAE model family (dark-shower anomaly detection on whole-event images): the module
(:mod:`~jetfm.codae.model`), its settings (:mod:`~jetfm.codae.config`), model inputs and
augmentation (:mod:`~jetfm.codae.data`), checkpoints (:mod:`~jetfm.codae.checkpoint`), training
(:mod:`~jetfm.codae.training`), anomaly scores and their evaluation (:mod:`~jetfm.codae.scoring`,
:mod:`~jetfm.codae.metrics`, :mod:`~jetfm.codae.report`), and the ONNX export
(:mod:`~jetfm.codae.export`) with its ONNX Runtime scoring (:mod:`~jetfm.codae.runtime`)."""
