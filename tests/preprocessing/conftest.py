"""What the tests of p53radiomics.preprocessing share: tiny phantoms (a body, a spherical tumour,
noise, an optional smooth multiplicative field) made with SimpleITK, cohort tables of them in memory
or on disk, and cohorts broken one way for the bad-input tests.

Each is a factory fixture: the test calls it with the arguments the docstring names. (The patient
and column a CohortError names are checked with ``assert_located``, from ``tests/conftest.py``.)
"""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.io import read_image

PHASES = ("ap", "pvp", "dp")


def _phantom(
    size=(24, 22, 10),
    spacing=(2.0, 2.0, 4.0),
    origin=(-20.0, 15.0, 40.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
    centre_mm=(4.0, -2.0, 0.0),
    radius_mm=9.0,
    log_field=None,
    seed=0,
):
    """A body ellipsoid (200) with a spherical tumour (300) in air (about 5), plus noise.

    Positions are in mm from the volume's centre, along the voxel axes. `log_field` maps the
    coordinate arrays ``(x, y, z)`` (mm, z-y-x broadcast) to a log multiplicative field.
    Returns ``(image, mask)``: float32 and uint8 images with the given geometry.
    """
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size, spacing, strict=True)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    half = [n * s / 2 for n, s in zip(size, spacing, strict=True)]
    body = (x / (0.85 * half[0])) ** 2 + (y / (0.85 * half[1])) ** 2 < 1
    tumour = (x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (
        z - centre_mm[2]
    ) ** 2 < radius_mm**2
    array = np.where(body, 200.0, 5.0) + np.where(tumour, 100.0, 0.0)
    array = np.abs(array + rng.normal(0.0, 3.0, size=array.shape))
    if log_field is not None:
        array = array * np.exp(log_field(x, y, z))
    image = sitk.GetImageFromArray(array.astype(np.float32))
    mask = sitk.GetImageFromArray(tumour.astype(np.uint8))
    for im in (image, mask):
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
        im.SetDirection(direction)
    return image, mask


def _cohort(n=3, phases=PHASES, shared_mask=True, folder=None, **kwargs):
    """A cohort table of phantoms (one per patient, the phases scaled differently), in memory or on disk."""
    rows = {}
    for i in range(n):
        pid = f"P{i + 1}"
        image, mask = _phantom(seed=i, centre_mm=(4.0 - 2 * i, -2.0 + i, 0.0), **kwargs)
        row = {phase: image * (1.0 + 0.5 * k) for k, phase in enumerate(phases)}
        if shared_mask:
            row["mask"] = mask
        else:
            row.update({f"{phase}_mask": mask for phase in phases})
        row["ltd"] = 30.0 + i
        rows[pid] = row
    X = pd.DataFrame.from_dict(rows, orient="index")
    return X if folder is None else _write(X, folder)


def _write(X, folder):
    """The same table with every image cell written to a file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    X = X.copy()
    for column in X.columns:
        for pid in X.index:
            cell = X.at[pid, column]
            if isinstance(cell, sitk.Image):
                path = folder / f"{pid}_{column}.nii.gz"
                sitk.WriteImage(cell, str(path))
                X.at[pid, column] = str(path)
    return X


def _array(cell):
    return sitk.GetArrayFromImage(read_image(cell))


def _bad_cohort(tmp_path, problem):
    """A 2-patient cohort on disk whose patient P2 has `problem`; returns (X, the column at fault)."""
    X = _cohort(n=2, shared_mask=False, folder=tmp_path / "in")
    if problem == "missing file":
        X.at["P2", "pvp"] = str(tmp_path / "in" / "nowhere.nii.gz")
        return X, "pvp"
    if problem == "unreadable file":
        bad = tmp_path / "in" / "broken.nii.gz"
        bad.write_bytes(b"not an image")
        X.at["P2", "pvp"] = str(bad)
        return X, "pvp"
    if problem == "empty cell":
        X.at["P2", "pvp"] = None
        return X, "pvp"
    if problem in ("NaN voxel", "infinite voxel", "constant image"):
        image = read_image(X.at["P2", "pvp"])
        array = sitk.GetArrayFromImage(image)
        if problem == "constant image":
            array[:] = 180.0
        else:
            array[3, 5, 7] = np.nan if problem == "NaN voxel" else -np.inf
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        # NRRD: ITK 5's NIfTI reader turns NaN and inf into 0 as it reads (nifti_read_buffer)
        path = tmp_path / "in" / f"bad_{problem.replace(' ', '_')}.nrrd"
        sitk.WriteImage(bad, str(path))
        X.at["P2", "pvp"] = str(path)
        return X, "pvp"
    mask = read_image(X.at["P2", "dp_mask"])
    if problem == "empty mask":
        mask = mask * 0
    elif problem == "several labels":
        mask[1, 1, 1] = 2
    elif problem == "geometry mismatch":
        mask.SetSpacing((2.0, 2.0, 5.0))
    path = tmp_path / "in" / f"bad_{problem.replace(' ', '_')}.nii.gz"
    sitk.WriteImage(mask, str(path))
    X.at["P2", "dp_mask"] = str(path)
    return X, "dp_mask"


@pytest.fixture(scope="session")
def phantom():
    """``phantom(size=(24, 22, 10), spacing=(2, 2, 4), origin=(-20, 15, 40), direction=identity,
    centre_mm=(4, -2, 0), radius_mm=9, log_field=None, seed=0)``: a body ellipsoid (200) with a
    spherical tumour (300) in air (about 5), plus noise; returns ``(image, mask)``."""
    return _phantom


@pytest.fixture(scope="session")
def phantom_cohort():
    """``phantom_cohort(n=3, phases=("ap", "pvp", "dp"), shared_mask=True, folder=None, **kwargs)``:
    a cohort table of phantoms (patients ``P1``..., the phases scaled differently, an ``ltd``
    column), in memory, or written to `folder`; `kwargs` go to ``phantom``."""
    return _cohort


@pytest.fixture(scope="session")
def write_images():
    """``write_images(X, folder)``: the same table with every image cell written to a file in
    `folder`."""
    return _write


@pytest.fixture(scope="session")
def voxels():
    """``voxels(cell)``: the voxel array (z, y, x) of an image cell, a path or a SimpleITK image."""
    return _array


@pytest.fixture(scope="session")
def bad_cohort():
    """``bad_cohort(tmp_path, problem)``: a 2-patient cohort on disk whose patient P2 has `problem`
    (``"missing file"``, ``"unreadable file"``, ``"empty cell"``, ``"empty mask"``,
    ``"several labels"``, ``"geometry mismatch"``, ``"NaN voxel"``, ``"infinite voxel"``,
    ``"constant image"``); returns ``(X, the column at fault)``."""
    return _bad_cohort
