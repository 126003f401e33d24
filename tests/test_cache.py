import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import struct
import threading
import time

import joblib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.cache import CaseCache, fingerprint


def _image(seed=0, spacing=(1.0, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(size=(4, 6, 5)).astype(np.float32))
    image.SetSpacing(spacing)
    return image


def test_fingerprint_follows_file_contents_not_path(tmp_path):
    a = tmp_path / "a.nii.gz"
    sitk.WriteImage(_image(0), str(a))
    moved = tmp_path / "sub" / "b.nii.gz"
    moved.parent.mkdir()
    shutil.copy(a, moved)
    assert fingerprint(a) == fingerprint(moved)
    sitk.WriteImage(_image(1), str(moved))
    assert fingerprint(a) != fingerprint(moved)


def test_fingerprint_of_in_memory_image_sees_pixels_type_and_geometry():
    base = fingerprint(_image(0))
    assert fingerprint(_image(0)) == base
    assert fingerprint(_image(1)) != base
    assert fingerprint(_image(0, spacing=(1.0, 1.0, 3.0))) != base
    assert fingerprint(sitk.Cast(_image(0), sitk.sitkFloat64)) != base


def test_fingerprint_of_folder(tmp_path):
    for i in range(2):
        sitk.WriteImage(_image(i), str(tmp_path / f"{i}.mha"))
    before = fingerprint(tmp_path)
    sitk.WriteImage(_image(5), str(tmp_path / "1.mha"))
    assert fingerprint(tmp_path) != before


def test_key_depends_on_parameters_inputs_and_version(tmp_path):
    cache = CaseCache(tmp_path, "step")
    key = cache.key("a", "b", params={"x": 1, "y": (1, 2)})
    assert key == cache.key("a", "b", params={"y": [1, 2], "x": 1})
    assert key != cache.key("a", "b", params={"x": 2, "y": (1, 2)})
    assert key != cache.key("b", "a", params={"x": 1, "y": (1, 2)})
    assert key != CaseCache(tmp_path, "step", version=2).key("a", "b", params={"x": 1, "y": (1, 2)})
    assert key != CaseCache(tmp_path, "other").key("a", "b", params={"x": 1, "y": (1, 2)})


def test_object_and_image_round_trip_with_counts(tmp_path):
    cache = CaseCache(tmp_path, "step")
    key = cache.key(fingerprint(_image(0)))
    assert cache.load(key) is None
    cache.save(key, {"f": np.float64(2.5)})
    assert cache.load(key) == {"f": 2.5}
    assert cache.image_path(key) is None
    written = cache.save_image(key, _image(0))
    assert cache.image_path(key) == written
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(written))), sitk.GetArrayFromImage(_image(0))
    )
    assert (cache.hits, cache.misses) == (2, 2)


def test_failed_write_leaves_no_entry_and_no_temporary_file(tmp_path):
    cache = CaseCache(tmp_path, "step")
    key = cache.key("x")

    def explode(tmp):
        tmp.write_bytes(b"half an entry")
        raise KeyboardInterrupt  # as if the run were killed mid-write

    with pytest.raises(KeyboardInterrupt):
        cache._atomic_write(cache.path(key), explode)
    assert not cache.path(key).exists()
    assert list(cache.path(key).parent.iterdir()) == []


def test_corrupt_entry_is_a_miss(tmp_path):
    cache = CaseCache(tmp_path, "step")
    key = cache.key("x")
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"not a pickle")
    assert cache.load(key) is None


def _writer(directory, value, n):
    cache = CaseCache(directory, "shared")
    for _ in range(n):
        cache.save(cache.key("same"), value)


def test_two_processes_writing_the_same_entry(tmp_path):
    value = {"features": np.arange(5000.0)}
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, value, 20)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = CaseCache(tmp_path, "shared")
    np.testing.assert_array_equal(cache.load(cache.key("same"))["features"], value["features"])
    entry = cache.path(cache.key("same"))
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name, f"{entry.name}.blake2b"]


# --------------------------------------------------------------------------------------------------
# Checksums: a damaged entry is computed again, never served
# --------------------------------------------------------------------------------------------------
IMAGE, MASK = ".image.nrrd", ".mask.nrrd"


def _damage_reports(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "p53radiomics.cache" and r.levelno == logging.WARNING
    ]


def _zero_tail(path, fraction=0.25):
    """Overwrite the last `fraction` of a file with zeros, as a disk that filled up does."""
    size = path.stat().st_size
    n = max(1, int(size * fraction))
    with open(path, "r+b") as fh:
        fh.seek(size - n)
        fh.write(b"\0" * n)


def _flip_bit(path, offset=None, bit=6):
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _image_entry(tmp_path):
    cache = CaseCache(tmp_path, "N4Resampler")
    key = cache.key(fingerprint(_image(0)))
    image = sitk.GetImageFromArray(
        np.random.default_rng(0).normal(1696.0, 50.0, size=(8, 20, 20)).astype(np.float32)
    )
    cache.save_image(key, sitk.Cast(image > 1696.0, sitk.sitkUInt8), MASK)
    cache.save_image(key, image, IMAGE)
    return cache, key, image


def test_zero_filled_tail_of_an_image_entry_is_computed_again(tmp_path, caplog):
    cache, key, image = _image_entry(tmp_path)
    _zero_tail(cache.path(key, IMAGE))
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.image_path(key, IMAGE) is None
    (report,) = _damage_reports(caplog)
    assert key in report and "does not match its checksum" in report
    assert not cache.path(key, IMAGE).exists()  # removed: never read again
    cache.save_image(key, image, IMAGE)  # what the caller does on a miss
    path = cache.image_path(key, IMAGE)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(path))), sitk.GetArrayFromImage(image)
    )
    assert (cache.hits, cache.misses) == (1, 1)


def test_damaged_mask_makes_the_whole_image_entry_a_miss(tmp_path, caplog):
    """The caller asks for the image's path only: the mask saved under the same key is checked too."""
    cache, key, _ = _image_entry(tmp_path)
    _flip_bit(cache.path(key, MASK))
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.image_path(key, IMAGE) is None
    (report,) = _damage_reports(caplog)
    assert f"{key}{MASK}" in report and f"{key}{IMAGE}" not in report
    assert not cache.path(key, MASK).exists()


def test_flipped_bit_in_an_object_entry_is_computed_again(tmp_path, caplog):
    cache = CaseCache(tmp_path, "radiomics")
    key = cache.key("case")
    value = {"features": {"original_firstorder_Mean": np.float64(1696.0)}}
    path = cache.save(key, value)
    # flip the top exponent bit of the stored float: 1696 becomes 9.4e-306 in a pickle that still
    # loads (what the cache served before its checksums)
    offset = path.read_bytes().index(struct.pack("<d", 1696.0)) + 7
    _flip_bit(path, offset, bit=6)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.load(key) is None
    assert len(_damage_reports(caplog)) == 1
    cache.save(key, value)
    assert cache.load(key) == value


@pytest.mark.parametrize("kind", ["object", "image"])
def test_truncated_entry_is_a_miss(tmp_path, kind, caplog):
    if kind == "object":
        cache = CaseCache(tmp_path, "radiomics")
        key = cache.key("case")
        path = cache.save(key, {"features": np.arange(100.0)})
        read = cache.load
    else:
        cache, key, _ = _image_entry(tmp_path)
        path = cache.path(key, IMAGE)
        read = lambda key: cache.image_path(key, IMAGE)  # noqa: E731
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert read(key) is None
    (report,) = _damage_reports(caplog)
    assert f"holds {size // 2} bytes instead of {size}" in report


@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_entry_without_a_valid_checksum_is_a_miss(tmp_path, damage, caplog):
    cache = CaseCache(tmp_path, "radiomics")
    key = cache.key("case")
    path = cache.save(key, {"features": 1.0})
    checksum = path.with_name(path.name + ".blake2b")
    if damage == "missing":
        checksum.unlink()
    else:
        _flip_bit(checksum, offset=3)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.load(key) is None
    (report,) = _damage_reports(caplog)
    assert ("no checksum" if damage == "missing" else "checksum file is unreadable") in report


def test_damage_is_reported_once(tmp_path, caplog):
    cache = CaseCache(tmp_path, "radiomics")
    key = cache.key("case")
    path = cache.save(key, {"features": 1.0})
    _zero_tail(path)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.load(key) is None
        assert CaseCache(tmp_path, "radiomics").load(key) is None  # another reader, later
        cache.save(key, {"features": 1.0})
        assert cache.load(key) == {"features": 1.0}
    assert len(_damage_reports(caplog)) == 1


def test_entries_of_the_format_without_checksums_are_silent_misses(tmp_path, caplog):
    """An entry written by the previous format (no checksum, key without a format) is not read."""
    cache = CaseCache(tmp_path, "radiomics")
    old_payload = {"namespace": "radiomics", "version": 1, "inputs": ["case"], "params": None}
    old_key = hashlib.blake2b(
        json.dumps(old_payload, sort_keys=True).encode(), digest_size=20
    ).hexdigest()
    old = cache.path(old_key)
    old.parent.mkdir(parents=True)
    joblib.dump({"features": 1.0}, old)
    assert cache.key("case") != old_key
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        assert cache.load(cache.key("case")) is None
    assert _damage_reports(caplog) == []


def _temporary(folder, name, age_s):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half an entry")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_temporary_files_are_removed_by_a_later_run(tmp_path):
    cache = CaseCache(tmp_path, "radiomics")
    key = cache.key("case")
    folder = cache.path(key).parent
    stale = _temporary(folder, f".{key}.4242.0badf00d.tmp.joblib", age_s=2 * 3600)
    stale_checksum = _temporary(folder, f".{key}.joblib.blake2b.4242.0badf00d.tmp", 2 * 3600)
    orphan_checksum = _temporary(folder, f"{'ab' * 20}.joblib.blake2b", age_s=2 * 3600)
    fresh = _temporary(folder, f".{key}.4243.0badf00d.tmp.joblib", age_s=5)
    assert cache.load(key) is None  # the first use of the namespace in this process
    assert not stale.exists() and not stale_checksum.exists() and not orphan_checksum.exists()
    assert fresh.exists()


def test_a_live_writers_temporary_file_is_kept_by_the_sweep_and_by_clear(tmp_path):
    """A write in progress (in another thread here; another process or machine in real use)."""
    writing, finish, errors = threading.Event(), threading.Event(), []
    writer = CaseCache(tmp_path, "radiomics")
    key = writer.key("case")

    def slow_dump(tmp):
        joblib.dump({"features": 2.0}, tmp)
        writing.set()
        assert finish.wait(30)

    def write():
        try:
            writer._atomic_write(writer.path(key), slow_dump)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert writing.wait(30)
        (tmp,) = [p for p in writer.path(key).parent.iterdir() if ".tmp" in p.name]
        other = CaseCache(tmp_path, "radiomics")
        assert other.remove_stale_temporaries() == 0
        other.clear()
        assert tmp.exists()
    finally:
        finish.set()
        thread.join(30)
    assert errors == [] and not tmp.exists()
    assert CaseCache(tmp_path, "radiomics").load(key) == {"features": 2.0}


# --------------------------------------------------------------------------------------------------
# End to end: damaged entries of the real steps are computed again
# --------------------------------------------------------------------------------------------------
SMALL_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": ["Mean", "Entropy"], "glcm": ["JointEntropy"]},
    "setting": {"binCount": 16},
}


def _phantom_files(folder, n=1):
    """A cohort table of `n` phantoms (body 200, tumour 300, noise) written as NIfTI files."""
    folder.mkdir()
    rows = {}
    for i in range(n):
        rng = np.random.default_rng(i)
        z, y, x = np.indices((10, 22, 24))
        tumour = (x - 12) ** 2 + (y - 11) ** 2 + 4 * (z - 5) ** 2 < 25
        array = 200.0 + 100.0 * tumour + rng.normal(0.0, 3.0, size=tumour.shape)
        image = sitk.GetImageFromArray(array.astype(np.float32))
        mask = sitk.GetImageFromArray(tumour.astype(np.uint8))
        for im in (image, mask):
            im.SetSpacing((2.0, 2.0, 4.0))
        rows[f"P{i}"] = {"ap": str(folder / f"P{i}.nii.gz"), "mask": str(folder / f"P{i}_m.nii.gz")}
        sitk.WriteImage(image, rows[f"P{i}"]["ap"])
        sitk.WriteImage(mask, rows[f"P{i}"]["mask"])
    return pd.DataFrame.from_dict(rows, orient="index")


def _steps(cache_dir):
    from p53radiomics.preprocessing import N4Resampler
    from p53radiomics.radiomics import RadiomicsExtractor

    return (
        N4Resampler(phases=("ap",), n_iterations=(20, 20), cache_dir=cache_dir),
        RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS, cache_dir=cache_dir),
    )


def _run(X, cache_dir):
    n4, extractor = _steps(cache_dir)
    Xt = n4.fit_transform(X)
    image = sitk.GetArrayFromImage(sitk.ReadImage(Xt.loc["P0", "ap"]))
    return image, extractor.fit_transform(Xt), n4, extractor


def test_damaged_entries_of_the_real_steps_are_computed_again(tmp_path, caplog):
    X, cache_dir = _phantom_files(tmp_path / "inputs"), tmp_path / "cache"
    image, features, _, _ = _run(X, cache_dir)
    (n4_entry,) = (cache_dir / "N4Resampler").rglob(f"*{IMAGE}")
    (radiomics_entry,) = (cache_dir / "radiomics").rglob("*.joblib")
    mean = features.loc["P0", "ap_original_firstorder_Mean"]

    # One bit of the radiomics entry: its Mean's top exponent bit (a pickle that still loads).
    data = radiomics_entry.read_bytes()
    stored = [p for p in (struct.pack("<d", mean), struct.pack(">d", mean)) if p in data]
    offset = data.index(stored[0]) + (7 if stored[0] == struct.pack("<d", mean) else 0)
    _flip_bit(radiomics_entry, offset, bit=6)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        again, features_again, n4, extractor = _run(X, cache_dir)
    np.testing.assert_array_equal(again, image)
    pd.testing.assert_frame_equal(features_again, features)
    assert (n4.cache_hits_, extractor.cache_misses_) == (1, 1)
    (report,) = _damage_reports(caplog)
    assert "radiomics" in report

    # Then a zero-filled tail in the preprocessed image, and the radiomics entry's bit again.
    caplog.clear()
    _zero_tail(n4_entry)
    _flip_bit(radiomics_entry, offset, bit=6)
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        again, features_again, n4, extractor = _run(X, cache_dir)
    np.testing.assert_array_equal(again, image)
    pd.testing.assert_frame_equal(features_again, features)
    assert n4.cache_misses_ == 1
    reports = _damage_reports(caplog)
    assert len(reports) == 2 and {"N4Resampler" in r for r in reports} == {True, False}

    caplog.clear()  # and the entries written again are served
    with caplog.at_level(logging.WARNING, logger="p53radiomics.cache"):
        _, features_again, n4, extractor = _run(X, cache_dir)
    pd.testing.assert_frame_equal(features_again, features)
    assert (n4.cache_hits_, extractor.cache_hits_) == (1, 1) and _damage_reports(caplog) == []
