"""The parametric detector response on hand-made particles (no event generation)."""
import numpy as np
import pytest

from jetfm.simulate.detector import (
    CMS_LIKE,
    DELPHES_LIKE,
    IDEAL,
    PuppiParams,
    cms_like_candidates,
    delphes_like_candidates,
    detector_response,
    puppi_weights,
)


def particles(rows, event=None, pu=None):
    """rows: (pt, eta, phi, pdgId, charge, vx, vy, vz) with vertex in mm."""
    a = np.array(rows, np.float64)
    pt, eta, phi = a[:, 0], a[:, 1], a[:, 2]
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    m = np.where(np.abs(a[:, 3]) == 211, 0.13957, 0.0)
    out = {"px": px, "py": py, "pz": pz, "E": np.sqrt(px ** 2 + py ** 2 + pz ** 2 + m ** 2),
           "pdgId": a[:, 3].astype(int), "charge": a[:, 4], "vx": a[:, 5], "vy": a[:, 6],
           "vz": a[:, 7]}
    if event is not None:
        out["event"] = np.asarray(event)
    if pu is not None:
        out["pu"] = np.asarray(pu, bool)
    return out


def test_species_and_sentinels():
    p = particles([(20, 0.1, 0.2, 211, 1, 0, 0, 0),
                   (15, -0.5, 1.0, 22, 0, 0, 0, 0),
                   (30, 1.0, -2.0, 2112, 0, 0, 0, 0),
                   (50, 0.0, 0.0, 12, 0, 0, 0, 0)])   # neutrino: invisible
    c = detector_response(p, np.random.default_rng(1), IDEAL)
    assert sorted(c["pdgId"].tolist()) == [22, 130, 211]
    neutral = c["charge"] == 0
    assert np.isnan(c["d0"][neutral]).all() and np.isnan(c["dzErr"][neutral]).all()
    assert np.isfinite(c["d0"][~neutral]).all() and (c["d0Err"][~neutral] > 0).all()
    # energy is conserved by a perfect detector (neutrino excluded)
    np.testing.assert_allclose(c["E"].sum(), p["E"][:3].sum(), rtol=1e-6)
    # sorted by decreasing pT
    assert np.all(np.diff(np.hypot(c["px"], c["py"])) <= 0)


def test_impact_parameter_from_vertex_in_cm_and_mm():
    # a track born 1 mm off the beam line, perpendicular to its direction: |d0| = 0.1 cm
    p = particles([(50, 0.0, 0.0, 211, 1, 0.0, 1.0, 5.0)])
    ideal = IDEAL.with_(d0_res=(1e-9, 0.0), dz_res=(1e-9, 0.0))
    c = detector_response(p, np.random.default_rng(0), ideal)
    assert c["d0"][0] == pytest.approx(0.1, abs=1e-6)
    assert c["dz"][0] == pytest.approx(0.5, abs=1e-6)
    c_mm = detector_response(p, np.random.default_rng(0), ideal.with_(ip_unit="mm"))
    assert c_mm["d0"][0] == pytest.approx(1.0, abs=1e-5)


def test_cell_merging_and_thresholds():
    # two photons in one ECAL cluster merge; a soft photon below threshold disappears
    p = particles([(10, 0.101, 0.101, 22, 0, 0, 0, 0),
                   (8, 0.102, 0.103, 22, 0, 0, 0, 0),
                   (0.1, -1.0, 2.0, 22, 0, 0, 0, 0)])
    c = cms_like_candidates(p, np.random.default_rng(3), CMS_LIKE.with_(ecal_res=(0, 0, 0)))
    assert len(c["E"]) == 1 and c["pdgId"][0] == 22
    assert c["E"][0] == pytest.approx(p["E"][:2].sum(), rel=1e-6)
    # with resolution: the merged photon keeps its energy within a few per cent
    c = cms_like_candidates(p, np.random.default_rng(3))
    assert c["E"].max() == pytest.approx(p["E"][:2].sum(), rel=0.1)


def test_track_expectation_absorbs_overlapping_neutral():
    # a soft neutral hadron inside the HCAL cell of a hard charged hadron is absorbed
    p = particles([(100, 0.3, 0.5, 211, 1, 0, 0, 0), (0.9, 0.3, 0.5 - 0.0012, 130, 0, 0, 0, 0)])
    c = cms_like_candidates(p, np.random.default_rng(5))
    assert 130 not in c["pdgId"].tolist()


def test_events_kept_apart_and_deterministic():
    rows = [(20, 0.1, 0.2, 22, 0, 0, 0, 0)] * 2
    p = particles(rows, event=[0, 1])
    c = cms_like_candidates(p, np.random.default_rng(0))
    assert c["event"].tolist() == [0, 1]        # same cell, different events: not merged
    c2 = cms_like_candidates(p, np.random.default_rng(0))
    np.testing.assert_array_equal(c["E"], c2["E"])


def test_delphes_like_differs_from_cms_like():
    rng = np.random.default_rng(0)
    n = 400
    # a jet-like spray of photons: Delphes towers (0.087) merge more of them than PF clusters
    rows = [(rng.exponential(3) + 0.5, rng.normal(0, 0.1), rng.normal(0, 0.1), 22, 0, 0, 0, 0)
            for _ in range(n)]
    p = particles(rows)
    n_cms = len(cms_like_candidates(p, np.random.default_rng(1))["E"])
    n_del = len(delphes_like_candidates(p, np.random.default_rng(1))["E"])
    assert n_del < n_cms
    assert CMS_LIKE.ip_unit == "cm" and DELPHES_LIKE.ip_unit == "mm"


def test_puppi_weights():
    # primary-vertex charged particles around (0, 0); pile-up charged spread out;
    # a neutral in the PV core gets a high weight, one far away a low weight
    rng = np.random.default_rng(2)
    rows, pu = [], []
    for _ in range(15):
        rows.append((rng.uniform(5, 30), rng.normal(0, 0.05), rng.normal(0, 0.05), 211, 1, 0, 0, 0))
        pu.append(False)
    for _ in range(60):
        rows.append((rng.uniform(0.5, 1.5), rng.uniform(-2, 2), rng.uniform(-3, 3), 211, -1,
                     0, 0, 30.0))
        pu.append(True)
    rows += [(10, 0.02, 0.02, 22, 0, 0, 0, 0), (1.0, 1.8, -2.5, 22, 0, 0, 0, 0)]
    pu += [False, True]
    c = detector_response(particles(rows, pu=pu), np.random.default_rng(0), IDEAL)
    w = puppi_weights(c, PuppiParams())
    ch = c["charge"] != 0
    assert (w[ch & c["pu"]] == 0).all() and (w[ch & ~c["pu"]] == 1).all()
    photons = np.flatnonzero(c["pdgId"] == 22)
    hard = photons[np.argmax(c["E"][photons])]
    soft = photons[np.argmin(c["E"][photons])]
    assert w[hard] > 0.9 and w[soft] < 0.1
    # without pile-up every weight is 1
    c0 = detector_response(particles(rows[:15] + rows[-2:-1]), np.random.default_rng(0), IDEAL)
    assert (puppi_weights(c0) == 1).all()
