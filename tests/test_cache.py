import multiprocessing
import shutil

import numpy as np
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
    assert [p.name for p in cache.path(cache.key("same")).parent.iterdir()] == [
        cache.path(cache.key("same")).name
    ]
