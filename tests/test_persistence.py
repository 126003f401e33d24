"""Model files that loading never executes: a round trip of the study's pipeline in a fresh
CPU-only process, every tampering refused before anything runs, the manifest's versions and
hashes."""

import hashlib
import io
import json
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from p53radiomics import (
    ModelFileError,
    ModelVersionWarning,
    load_model,
    save_model,
)
from p53radiomics.persistence import read_manifest

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("test_persistence")

WEIGHTS = "weights/cnn0.safetensors"


class _WritesFile:
    """Unpickled, it writes ``path``: the payload of a malicious pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "this ran"))


class Marker(TransformerMixin, BaseEstimator):
    """A type skops does not trust: built, it writes the file ``path``."""

    def __init__(self, path=None):
        self.path = path

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X

    def __setstate__(self, state):
        Path(state["path"]).write_text("this ran")
        super().__setstate__(state)


@pytest.fixture(scope="module")
def cohort(synthetic_cohort):
    X, y, _ = synthetic_cohort
    return X, y


@pytest.fixture(scope="module")
def fitted(cohort, tiny_paper_pipeline, tmp_path_factory):
    """The clinical + radiomics + deep pipeline with tiny settings, fitted once for the module."""
    X, y = cohort
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions on a shared 2-core machine
    model = tiny_paper_pipeline(
        ["ltd", "rim_aphe", "age", "gender"], tmp_path_factory.mktemp("persistence_cache")
    )
    model.fit(X, y)
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("persistence_model") / "model.p53"
    save_model(fitted, path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(src, dst, *, replace=(), add=(), drop=(), fix_hashes=True, edit=None):
    """A copy of model file ``src`` at ``dst`` with members replaced, added or dropped; the
    manifest's hashes recomputed (as a forger would) unless ``fix_hashes`` is false."""
    members = _members(src)
    manifest = json.loads(members.pop("manifest.json"))
    members.update(dict(replace))
    members.update(dict(add))
    for name in drop:
        members.pop(name)
    if fix_hashes:
        manifest["members"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
        }
    if edit is not None:
        edit(manifest)
    with zipfile.ZipFile(dst, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def _flip_last_byte(data):
    return data[:-1] + bytes([data[-1] ^ 1])


# ------------------------------------------------------------------ round trip


def test_round_trip_predicts_the_same_in_a_fresh_cpu_only_process(cohort, fitted, saved, tmp_path):
    X, _ = cohort
    expected = fitted.predict_proba(X)
    X.to_pickle(tmp_path / "X.pkl")  # the test's own data, not the model
    cache = fitted.named_steps["preprocess"].cache_dir  # each case's preprocessing read back
    script = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd, torch
        from p53radiomics import load_model
        assert not torch.cuda.is_available()
        model = load_model({str(saved)!r}, cache_dir={cache!r})
        cnn = model.named_steps["fusion"].named_estimators_["deep"].named_steps["cnn"]
        assert cnn.device_ == "cpu" and str(cnn.net_.device) == "cpu"
        np.save({str(tmp_path / "p.npy")!r}, model.predict_proba(pd.read_pickle({str(tmp_path / "X.pkl")!r})))
        """
    )
    env = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=600, env=env, encoding="utf-8"
    )
    # Every load of the file predicts the same numbers, bit for bit, in any CPU process. Against
    # the fitted model in memory they agree to rounding: a CNN rebuilt from its tensors (as one
    # copied by pickle) runs torch's CPU convolutions at float rounding of the original (1e-16
    # here), the same as a joblib round trip does.
    loaded = load_model(saved, cache_dir=cache)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), loaded.predict_proba(X))
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-12, atol=1e-14)


def test_loaded_model_keeps_the_settings_and_fitted_state(cohort, fitted, saved):
    X, _ = cohort
    loaded = load_model(saved)
    assert sklearn.clone(loaded).get_params().keys() == fitted.get_params().keys()
    assert loaded.get_params()["fusion__deep__cnn__backbone"] == "resnet18"
    np.testing.assert_allclose(  # to float rounding (test_round_trip_predicts_the_same...)
        loaded.predict_proba(X), fitted.predict_proba(X), rtol=1e-12, atol=1e-14
    )
    cnn = lambda m: m.named_steps["fusion"].named_estimators_["deep"].named_steps["cnn"]  # noqa: E731
    assert len(cnn(loaded).net_.history) == len(cnn(fitted).net_.history) == 1


def test_a_loaded_model_caches_only_where_it_is_told(cohort, fitted, tmp_path):
    """The cache folder saved in a file is its author's: its feature entries are pickles, so a
    folder chosen by the author (shipped beside the file, say) could run code. A loaded model
    caches nowhere, or where ``load_model(cache_dir=)`` says."""
    import shutil

    from p53radiomics.cache import CaseCache
    from p53radiomics.pipeline import use_cache

    X, _ = cohort
    planted = tmp_path / "planted"  # a copy of the fitted model's cache, its entries poisoned
    shutil.copytree(fitted.named_steps["preprocess"].cache_dir, planted)
    marker = tmp_path / "ran.txt"
    entries = sorted(planted.rglob("*.joblib"))
    assert entries  # the radiomics features of every case
    for entry in entries:
        CaseCache(planted, entry.parent.parent.name).save(entry.stem, _WritesFile(marker))
    CaseCache(planted, entries[0].parent.parent.name).load(entries[0].stem)  # what a read does
    assert marker.read_text() == "this ran"
    marker.unlink()
    save_model(use_cache(fitted, planted), tmp_path / "model.p53")
    assert read_manifest(tmp_path / "model.p53")["training_settings"][
        "preprocess__cache_dir"
    ] == str(planted)
    expected = fitted.predict_proba(X.iloc[:3])
    loaded = load_model(tmp_path / "model.p53")
    folders = {k: v for k, v in loaded.get_params().items() if k.endswith("__cache_dir")}
    assert len(folders) >= 2 and set(folders.values()) == {None}, folders
    np.testing.assert_allclose(loaded.predict_proba(X.iloc[:3]), expected, rtol=1e-12, atol=1e-14)
    mine = tmp_path / "mine"
    elsewhere = load_model(tmp_path / "model.p53", cache_dir=mine)
    assert set(elsewhere.get_params()[k] for k in folders) == {str(mine)}
    np.testing.assert_allclose(
        elsewhere.predict_proba(X.iloc[:3]), expected, rtol=1e-12, atol=1e-14
    )
    assert len(list(mine.rglob("*.joblib"))) == 3 * 3  # its own: each patient's three phases
    assert not marker.exists()  # no planted entry was read


def test_a_model_file_holds_no_patient_id_unless_asked_to_keep_the_case_records(
    cohort, fitted, saved, tmp_path, patient_ids_in_file
):
    import pandas as pd

    X, _ = cohort
    ids = {str(pid) for pid in X.index}
    extract = lambda m: m.named_steps["fusion"].named_estimators_["radiomics"][0]  # noqa: E731
    seen = set(extract(fitted).diagnostics_.index)  # in memory: the last call's patients
    assert seen and seen <= ids
    assert patient_ids_in_file(saved, ids) == set()
    loaded = load_model(saved)
    assert not hasattr(extract(loaded), "diagnostics_") and not hasattr(extract(loaded), "skipped_")
    assert not hasattr(loaded.named_steps["preprocess"], "skipped_")
    assert read_manifest(saved)["case_records_kept"] is False
    extract(loaded).transform(loaded.named_steps["preprocess"].transform(X.iloc[:2]))
    assert list(extract(loaded).diagnostics_.index) == list(X.index[:2])  # set again on use
    # kept on request: the same records back
    save_model(fitted, tmp_path / "kept.p53", keep_case_records=True)
    assert patient_ids_in_file(tmp_path / "kept.p53", ids) == seen
    assert read_manifest(tmp_path / "kept.p53")["case_records_kept"] is True
    kept = load_model(tmp_path / "kept.p53")
    pd.testing.assert_frame_equal(extract(kept).diagnostics_, extract(fitted).diagnostics_)


def test_saving_leaves_the_model_as_it_was(fitted, tmp_path):
    before = hashlib.sha256(pickle.dumps(fitted)).hexdigest()
    save_model(fitted, tmp_path / "again.p53")
    assert hashlib.sha256(pickle.dumps(fitted)).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["again.p53"]  # no temporary file left


def test_the_weights_are_tensors_only_and_no_member_is_a_pickle(saved):
    import safetensors.torch

    members = _members(saved)
    assert sorted(members) == ["manifest.json", "model.skops", WEIGHTS]
    tensors = safetensors.torch.load(members[WEIGHTS])
    assert all(isinstance(t, torch.Tensor) for t in tensors.values()) and tensors
    assert not any(data[:1] == b"\x80" for data in members.values())


def test_the_manifest_holds_versions_hashes_and_the_training_settings(
    cohort, saved, tiny_radiomics_params
):
    import radiomics
    import safetensors
    import SimpleITK
    import skops

    import p53radiomics

    X, _ = cohort
    manifest = read_manifest(saved)
    assert manifest["format"] == "p53radiomics-model" and manifest["format_version"] == "1.0"
    assert manifest["versions"] == {
        "p53radiomics": p53radiomics.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": str(torch.__version__),
        "SimpleITK": SimpleITK.__version__,
        "PyRadiomics": radiomics.__version__,
        "numpy": np.__version__,
        "skops": skops.__version__,
        "safetensors": safetensors.__version__,
    }
    members = _members(saved)
    assert set(manifest["members"]) == set(members) - {"manifest.json"}
    for name, entry in manifest["members"].items():
        assert entry == {
            "sha256": hashlib.sha256(members[name]).hexdigest(),
            "size": len(members[name]),
        }
    assert manifest["phases"] == ["ap", "pvp", "dp"]
    assert manifest["input_columns"] == list(X.columns)
    assert set(manifest["feature_names"]["fusion/clinical"]) <= {
        "ltd",
        "rim_aphe",
        "age",
        "gender_male",
    }
    assert all(
        n.startswith(("ap_", "pvp_", "dp_")) for n in manifest["feature_names"]["fusion/radiomics"]
    )
    assert manifest["cnns"] == [{"member": WEIGHTS, "backbone": "resnet18", "mode": "mc"}]
    settings = manifest["training_settings"]
    assert settings["fusion__deep__cnn__backbone"] == "resnet18"
    assert settings["fusion__radiomics__extract__params"] == tiny_radiomics_params
    assert settings["fusion"] == "p53radiomics.fusion._stacking.StackingFusion"
    assert manifest["metadata"] is None


# ------------------------------------------------------------------ tampering


@pytest.mark.parametrize("member", [WEIGHTS, "model.skops"])
def test_a_changed_member_is_refused_by_name(saved, tmp_path, member):
    changed = _flip_last_byte(_members(saved)[member])
    path = _rewrite(saved, tmp_path / "m.p53", replace={member: changed}, fix_hashes=False)
    with pytest.raises(ModelFileError, match="SHA-256") as excinfo:
        load_model(path)
    assert excinfo.value.member == member and repr(member) in str(excinfo.value)


def _pickled_npy(payload):
    buffer = io.BytesIO()
    np.save(buffer, np.array([payload], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _inside_skops(data, payload):
    """The skops archive ``data`` with one of its arrays replaced by a pickled object array."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        npy = [n for n in src.namelist() if n.endswith(".npy")]
        for name in src.namelist():
            dst.writestr(name, _pickled_npy(payload) if name == npy[0] else src.read(name))
    return out.getvalue()


@pytest.mark.parametrize(
    ("where", "member"),
    [
        ("whole file", None),
        ("weights", WEIGHTS),
        ("skops", "model.skops"),
        ("extra member", "model.pkl"),
        ("array in skops", "model.skops"),
    ],
)
def test_a_pickle_payload_is_refused_and_never_runs(saved, tmp_path, where, member):
    marker = tmp_path / "pwned.txt"
    payload = pickle.dumps(_WritesFile(marker))
    pickle.loads(pickle.dumps(_WritesFile(tmp_path / "control.txt")))  # the payload is live
    assert (tmp_path / "control.txt").exists()
    path = tmp_path / "m.p53"
    if where == "whole file":
        path.write_bytes(payload)
    elif where == "array in skops":
        inner = _inside_skops(_members(saved)["model.skops"], _WritesFile(marker))
        _rewrite(saved, path, replace={"model.skops": inner})
    elif where == "extra member":
        _rewrite(saved, path, add={member: payload})
    else:
        _rewrite(saved, path, replace={member: payload})
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert excinfo.value.member == member
    assert not marker.exists()


def test_an_untrusted_type_is_refused_unless_trusted(tmp_path):
    marker = tmp_path / "built.txt"
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = make_pipeline(Marker(str(marker)), LogisticRegression()).fit(X, X[:, 0] > 0)
    save_model(model, tmp_path / "m.p53")
    marker.unlink()  # saving deep-copies the model, which runs __setstate__
    name = f"{Marker.__module__}.{Marker.__qualname__}"  # tests.test_persistence.Marker
    with pytest.raises(ModelFileError, match=rf"untrusted types \[{re.escape(repr(name))}\]") as e:
        load_model(tmp_path / "m.p53")
    assert e.value.member == "model.skops"
    assert not marker.exists()
    loaded = load_model(tmp_path / "m.p53", trusted=[name])
    assert marker.exists()  # it would have run: trusted, it did
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_unknown_and_missing_members_are_refused_by_name(saved, tmp_path):
    for kwargs, member in [
        ({"add": {"notes.txt": b"hello"}}, "notes.txt"),
        ({"drop": [WEIGHTS]}, WEIGHTS),
        ({"drop": ["model.skops"]}, "model.skops"),
    ]:
        path = _rewrite(saved, tmp_path / f"{member.replace('/', '_')}.p53", **kwargs)
        with pytest.raises(ModelFileError) as excinfo:
            load_model(path)
        assert excinfo.value.member == member, str(excinfo.value)
    unlisted = _rewrite(saved, tmp_path / "unlisted.p53", edit=lambda m: m["members"].pop(WEIGHTS))
    with pytest.raises(ModelFileError, match="not listed") as excinfo:
        load_model(unlisted)
    assert excinfo.value.member == WEIGHTS


# ------------------------------------------------------------------ versions


def _set(key, value):
    def edit(manifest):
        if key == "format_version":
            manifest[key] = value
        else:
            manifest["versions"][key] = value

    return edit


def test_other_versions_warn_naming_them(cohort, fitted, saved, tmp_path):
    X, _ = cohort
    path = _rewrite(saved, tmp_path / "m.p53", edit=_set("scikit-learn", "0.1"))
    with pytest.warns(
        ModelVersionWarning, match=rf"scikit-learn 0.1 \(installed: {sklearn.__version__}\)"
    ):
        loaded = load_model(path)
    np.testing.assert_allclose(  # to float rounding (test_round_trip_predicts_the_same...)
        loaded.predict_proba(X), fitted.predict_proba(X), rtol=1e-12, atol=1e-14
    )
    later = _rewrite(saved, tmp_path / "later.p53", edit=_set("format_version", "1.7"))
    with pytest.warns(ModelVersionWarning, match=r"file format 1.7 \(installed: 1.0\)"):
        load_model(later)


def test_another_major_format_version_is_refused(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "m.p53", edit=_set("format_version", "2.0"))
    with pytest.raises(ModelFileError, match=r"format version '2.0'.*1\.x only") as excinfo:
        load_model(path)
    assert excinfo.value.member == "manifest.json"


def test_an_unfitted_model_is_not_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_model(make_pipeline(LogisticRegression()), tmp_path / "m.p53")
    assert not list(tmp_path.iterdir())
