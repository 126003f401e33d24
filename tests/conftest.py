"""Fixtures shared by every test module: the reference data, a synthetic cohort, small volumes,
DICOM series and cohort tables written to disk."""

from pathlib import Path

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
    # balanced, 4 and 4: the stacking and LASSO folds of a fit need 2 patients of each class
    X, y = make_synthetic_cohort(directory, n_patients=8, random_state=0, voxel_scale=2.5,
                                 prevalence=0.5)  # fmt: skip
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


# The tiny settings of the study's whole pipeline, defined once for the tests that fit it: a
# reduced radiomics set and tiny CNN settings keep a fit to seconds on a CPU.
_TINY_RADIOMICS = {
    "imageType": {"Original": {}},
    "featureClass": {
        "firstorder": ["Mean", "Median", "Skewness", "Kurtosis", "Entropy", "Uniformity"],
        "glcm": ["Contrast", "Correlation"],
    },
    "setting": {"binCount": 16, "label": 1},
}


@pytest.fixture(scope="session")
def tiny_radiomics_params():
    """A PyRadiomics parameter dict of eight first-order and texture features (a fresh copy)."""
    import copy

    return copy.deepcopy(_TINY_RADIOMICS)


@pytest.fixture(scope="session")
def tiny_paper_pipeline(tiny_radiomics_params):
    """``make(clinical_columns, cache_dir, **settings)``: :func:`make_paper_pipeline` with tiny
    settings (ResNet18 MC on 32-pixel crops for one epoch, 2-mm voxels, 2 folds, N4 with 2 levels
    of 10 iterations, each LASSO over 5 candidate Cs); `settings` override them."""
    from p53radiomics import make_paper_pipeline

    def make(clinical_columns, cache_dir, **settings):
        tiny = dict(
            backbone="resnet18",
            mode="mc",
            cache_dir=str(cache_dir),
            crop_size=32,
            max_epochs=1,
            batch_size=16,
            n_components=2,
            radiomics_params=tiny_radiomics_params,
            spacing=(2.0, 2.0, 2.0),
            margin_mm=10.0,
            cv=2,
            random_state=0,
            device="cpu",
        )
        model = make_paper_pipeline(clinical_columns, **{**tiny, **settings})
        # N4 converges on these small volumes in a few iterations; 5 LASSO candidates instead of
        # 20 are a quarter of its fits (the examples' setting)
        return model.set_params(
            preprocess__n_iterations=(10, 10),
            **{f"fusion__{branch}__select__Cs": 5 for branch in ("clinical", "radiomics", "deep")},
        )

    return make


@pytest.fixture(scope="session")
def patient_ids_in_file():
    """``find(path, ids)``: the `ids` whose text occurs in the file `path` or, where it is a zip
    archive (a model file, its skops member), in any member, however deep."""
    import io
    import zipfile

    def contents(data):
        yield data
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    yield from contents(archive.read(name))

    def find(path, ids):
        data = list(contents(Path(path).read_bytes()))
        return {pid for pid in ids if any(pid.encode() in d for d in data)}

    return find
