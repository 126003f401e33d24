"""RadiomicsExtractor: the same output under n_jobs, the per-case cache (hit, keyed by contents,
missed on other settings), the image-level estimator checks, stateless tags and set_output,
passthrough columns, and logging (PyRadiomics quiet unless asked, no import at import time).

The reduced parameter set (``small_params``) and the synthetic tumours are in ``conftest.py``; the
values against PyRadiomics are tested in ``test_baselines.py``, the parameters in
``test_params.py``, bad inputs in ``test_bad_inputs.py``.
"""

import io
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import clone

from p53radiomics.exceptions import CohortError
from p53radiomics.radiomics import (
    RadiomicsExtractor,
)
from p53radiomics.utils.estimator_checks import check_image_estimator


# --------------------------------------------------------------------------------------------------
# Speed: parallel, cache
# --------------------------------------------------------------------------------------------------
def test_n_jobs_2_equals_n_jobs_1(tmp_path, tumour_cohort, small_params):
    X = tumour_cohort(3, folder=tmp_path)
    serial = RadiomicsExtractor(phases=("ap", "pvp"), params=small_params, n_jobs=1).fit_transform(
        X
    )
    parallel = RadiomicsExtractor(
        phases=("ap", "pvp"), params=small_params, n_jobs=2
    ).fit_transform(X)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=False, rtol=1e-12, atol=0)
    assert np.isfinite(serial.to_numpy()).all()


def test_the_cache_is_hit(tmp_path, monkeypatch, tumour, tumour_cohort, small_params):
    inputs, cache_dir = tmp_path / "inputs", tmp_path / "cache"
    inputs.mkdir()
    X = tumour_cohort(2, folder=inputs)
    first = RadiomicsExtractor(phases=("ap", "pvp"), params=small_params, cache_dir=cache_dir)
    expected = first.fit_transform(X)
    assert (first.cache_misses_, first.cache_hits_) == (4, 0)
    assert not list(inputs.glob("*cache*")) and sorted(p.name for p in inputs.iterdir()) == sorted(
        Path(c).name for c in X[["ap", "ap_mask", "pvp", "pvp_mask"]].to_numpy().ravel()
    )

    # A second extractor (as in cross-validation: a clone) reads every case back, extracts nothing.
    import p53radiomics.radiomics._extractor as extractor_module

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted a case that is in the cache")

    with monkeypatch.context() as patch:
        patch.setattr(extractor_module, "extract_phase", no_extraction)
        second = clone(first)
        again = second.fit_transform(X)
    pd.testing.assert_frame_equal(expected, again, check_exact=True)
    assert (second.cache_misses_, second.cache_hits_) == (0, 4)
    pd.testing.assert_frame_equal(first.diagnostics_, second.diagnostics_)

    # keyed by contents: moved files still hit, an edited image misses (only its own case)
    moved = tmp_path / "moved"
    shutil.copytree(inputs, moved)
    X_moved = X.copy()
    for column in ("ap", "ap_mask", "pvp", "pvp_mask"):
        X_moved[column] = [str(moved / Path(p).name) for p in X[column]]
    image, _ = tumour(99, radius=4.0)
    sitk.WriteImage(image, X_moved.at["P001", "pvp"])
    third = clone(first)
    changed = third.fit_transform(X_moved)
    assert (third.cache_misses_, third.cache_hits_) == (1, 3)
    pd.testing.assert_frame_equal(
        changed.drop(index="P001"), expected.drop(index="P001"), check_exact=True
    )
    assert not np.allclose(
        changed.loc["P001"].filter(like="pvp_"), expected.loc["P001"].filter(like="pvp_")
    )

    # other parameters miss; in-memory images are keyed by their pixels and geometry
    other = RadiomicsExtractor(
        phases=("ap",), params={**small_params, "setting": {"binCount": 8}}, cache_dir=cache_dir
    )
    other.fit_transform(X)
    assert (other.cache_misses_, other.cache_hits_) == (2, 0)
    X_memory = X.copy()
    for column in ("ap", "ap_mask"):
        X_memory[column] = [sitk.ReadImage(p) for p in X[column]]
    in_memory = RadiomicsExtractor(phases=("ap",), params=small_params, cache_dir=cache_dir)
    in_memory.fit_transform(X_memory)
    assert in_memory.cache_hits_ == 0
    in_memory.fit_transform(X_memory)
    assert in_memory.cache_hits_ == 2


# --------------------------------------------------------------------------------------------------
# scikit-learn conventions
# --------------------------------------------------------------------------------------------------
def test_image_estimator_checks_on_files(tmp_path, tumour_cohort, small_params):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    X = tumour_cohort(2, folder=inputs)
    check_image_estimator(
        RadiomicsExtractor(phases=("ap", "pvp"), params=small_params, cache_dir=tmp_path / "cache"),
        X,
    )


def test_image_estimator_checks_in_memory(tumour_cohort, small_params):
    check_image_estimator(
        RadiomicsExtractor(phases=("ap",), params=small_params, n_jobs=1),
        tumour_cohort(2, phases=("ap",)),
    )


def test_stateless_tags_and_set_output(tumour_cohort, small_params):
    extractor = RadiomicsExtractor(phases=("ap",), params=small_params)
    assert extractor.__sklearn_tags__().requires_fit is False
    X = tumour_cohort(2, phases=("ap",))
    plain = extractor.transform(X)  # no fit needed
    assert not [a for a in vars(RadiomicsExtractor()) if a.endswith("_")]
    assert extractor.set_output(transform="pandas") is extractor
    pd.testing.assert_frame_equal(extractor.transform(X), plain)
    assert isinstance(extractor.set_output(transform="default").transform(X), pd.DataFrame)
    assert plain.index.equals(X.index)


def test_passthrough_columns_follow_the_features(tumour_cohort, small_params):
    X = tumour_cohort(3, phases=("ap",)).assign(scanner=["S1", "S2", "S1"])
    plain = RadiomicsExtractor(phases=("ap",), params=small_params)
    extractor = clone(plain).set_params(passthrough=("scanner", "age"))
    out = extractor.fit(X).transform(X)
    names = plain.get_feature_names_out().tolist()
    assert out.columns.tolist() == [*names, "scanner", "age"]
    assert extractor.get_feature_names_out().tolist() == out.columns.tolist()
    pd.testing.assert_frame_equal(out[names], plain.transform(X))
    assert out["scanner"].tolist() == ["S1", "S2", "S1"] and out["age"].tolist() == [50, 51, 52]
    assert out.index.equals(X.index) and out[names].dtypes.eq(np.float64).all()
    # a missing column is named, in fit and in transform, before anything is extracted
    for method in (extractor.fit, extractor.transform):
        with pytest.raises(CohortError, match="column 'scanner': passthrough column is missing"):
            method(X.drop(columns="scanner"))
    for bad, match in (("scanner", "tuple"), (("age", "age"), "twice"), ((3,), "column names")):
        with pytest.raises(ValueError, match=match):
            clone(plain).set_params(passthrough=bad).fit(X)
    with pytest.raises(ValueError, match="has the name of a feature"):
        clone(plain).set_params(passthrough=(names[0],)).get_feature_names_out()


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------
def test_pyradiomics_is_quiet_unless_asked(caplog, tumour):
    image, mask = tumour(5)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    # enabling a deprecated feature makes PyRadiomics warn on every extraction
    params = {"featureClass": {"firstorder": ["Mean", "StandardDeviation"]}}
    import radiomics

    rlogger = logging.getLogger("radiomics")
    state = (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])
    own_stream = io.StringIO()  # PyRadiomics's own stderr handler, attached when it is imported
    previous = radiomics.handler.setStream(own_stream)
    try:
        with caplog.at_level(logging.DEBUG):  # records that reach the root logger
            caplog.clear()
            RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)
            assert own_stream.getvalue() == ""
            assert not [r for r in caplog.records if r.name.startswith("radiomics")]
            RadiomicsExtractor(phases=("ap",), params=params, verbose=2).fit_transform(X)
            assert "StandardDeviation is deprecated" in own_stream.getvalue()
            assert any("StandardDeviation is deprecated" in r.getMessage() for r in caplog.records)
    finally:
        radiomics.handler.setStream(previous)
    assert state == (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])


def test_importing_does_not_import_pyradiomics_or_add_handlers():
    code = (
        "import logging, sys, p53radiomics.radiomics;"
        "assert 'radiomics' not in sys.modules, 'PyRadiomics imported';"
        "assert not any(logging.getLogger(n).handlers for n in logging.root.manager.loggerDict if n.startswith('p53radiomics'))"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2]
    )
