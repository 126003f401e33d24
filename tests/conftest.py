"""Fixtures shared by every test module: the reference data, a synthetic cohort, small volumes,
DICOM series and cohort tables written to disk."""

import pytest

from tests._shared_data import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    """Folder of the real reference data (PyRadiomics baselines, aSAH, dcurves, an abdominal MR).

    Tests that need it are skipped, with the reason, where the folder is not found.
    """
    folder = shared_data_dir()
    if folder is None:
        pytest.skip(
            "reference data not found: set P53RADIOMICS_SHARED_DATA to the shared/data folder"
        )
    return folder


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory):
    """A small synthetic cohort on disk (8 patients, coarse voxels): ``(X, y, directory)``.

    Read-only: tests must not write into its folder (use ``tmp_path``).
    """
    from p53radiomics.datasets import make_synthetic_cohort

    directory = tmp_path_factory.mktemp("synthetic_cohort")
    X, y = make_synthetic_cohort(directory, n_patients=8, random_state=0, voxel_scale=2.5)
    return X, y, directory


# ------------------------------------------------------------------ cohorts and images on disk
def _noise_volume(seed=0, size=(12, 10, 6), spacing=(0.8, 0.8, 3.0), origin=(-5.0, 3.0, 10.0)):
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 10, size=size[::-1]).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _box_mask(image, label=1):
    import SimpleITK as sitk

    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[3:8, 3:7, 2:4] = label
    return mask


@pytest.fixture
def make_volume():
    """``make_volume(seed=0, size=(12, 10, 6), spacing=(0.8, 0.8, 3.0), origin=(-5, 3, 10))``: an
    int16 volume of noise around 100 (seeded), as a :class:`SimpleITK.Image`."""
    return _noise_volume


@pytest.fixture
def mask_like():
    """``mask_like(image, label=1)``: a ``sitkUInt8`` mask on `image`'s grid, a 5×4×2 box of
    `label` at index (3:8, 3:7, 2:4)."""
    return _box_mask


@pytest.fixture
def assert_located():
    """``assert_located(excinfo, patient_id, column)``: the CohortError names both, in its
    attributes and in its message."""

    def check(excinfo, patient_id, column):
        err = excinfo.value
        assert err.patient_id == patient_id and err.column == column, str(err)
        assert repr(patient_id) in str(err) and repr(column) in str(err)

    return check


@pytest.fixture
def write_cohort():
    """``write_cohort(folder, ids, phases, image, mask, label, ext=".nii.gz")``: a cohort on disk.

    For patient ``i`` (id ``ids[i]``) and phase ``k``, ``image(10 * i + k)`` and ``mask(image)`` are
    written as ``img/{id}_{phase}{ext}`` and ``img/{id}_{phase}_mask{ext}``; ``cohort.csv`` holds
    ``patient_id``, ``ltd`` (30 + i), ``rim_aphe`` (i % 2), ``p53`` (``label(i)``) and the paths,
    relative to `folder`. Returns the CSV's path.
    """

    def write(folder, ids, phases, image, mask, label, ext=".nii.gz"):
        import pandas as pd
        import SimpleITK as sitk

        (folder / "img").mkdir(parents=True)
        rows = []
        for i, pid in enumerate(ids):
            row = {"patient_id": pid, "ltd": 30.0 + i, "rim_aphe": i % 2, "p53": label(i)}
            for k, phase in enumerate(phases):
                volume = image(10 * i + k)
                sitk.WriteImage(volume, str(folder / "img" / f"{pid}_{phase}{ext}"))
                sitk.WriteImage(mask(volume), str(folder / "img" / f"{pid}_{phase}_mask{ext}"))
                row[phase] = f"img/{pid}_{phase}{ext}"
                row[f"{phase}_mask"] = f"img/{pid}_{phase}_mask{ext}"
            rows.append(row)
        pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
        return folder / "cohort.csv"

    return write


@pytest.fixture
def write_dicom_series():
    """``write_dicom_series(image, folder, series_uid, *, description=None, position=None,
    name=None)``: one DICOM file per slice of `image`, with the tags a series reader needs
    (SimpleITK's own recipe). ``position(z)`` overrides the ImagePositionPatient of slice ``z``,
    ``name(z)`` its file name (default ``f"{series_uid}_{z:03d}.dcm"``)."""
    import SimpleITK as sitk

    def write(image, folder, series_uid, *, description=None, position=None, name=None):
        folder.mkdir(parents=True, exist_ok=True)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        d = image.GetDirection()
        for z in range(image.GetDepth()):
            slice_ = image[:, :, z]
            ipp = position(z) if position else image.TransformIndexToPhysicalPoint((0, 0, z))
            tags = {
                "0008|0060": "MR",
                "0020|000d": series_uid + ".1",
                "0020|000e": series_uid,
                "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7]))),
                "0020|0032": "\\".join(map(str, ipp)),
                "0020|0013": str(z + 1),
                "0018|0050": str(image.GetSpacing()[2]),
                "0008|0018": f"{series_uid}.{z + 1}",
            }
            if description is not None:
                tags["0008|103e"] = description
            for tag, value in tags.items():
                slice_.SetMetaData(tag, value)
            writer.SetFileName(str(folder / (name(z) if name else f"{series_uid}_{z:03d}.dcm")))
            writer.Execute(slice_)

    return write
