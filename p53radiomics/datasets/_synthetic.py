"""A synthetic three-phase DCE-MRI cohort that behaves like the study's.

No patient data may be shipped, so the demo, the examples and the tests run on this cohort. Each
patient has an arterial (AP), portal venous (PVP) and delayed (DP) 3D volume with a liver, a spleen,
the aorta and portal vein, and one tumour whose appearance follows its clinical variables:

- size and shape: an ellipsoid whose largest diameter is ``ltd``, with a lobulated outline;
- arterial phase: diffuse hyperenhancement, or rim enhancement with a hypo-enhancing core when
  ``rim_aphe`` (from marked to faint, drawn per tumour);
- portal venous and delayed phases: washout (non-peripheral, peripheral or none), an enhancing
  capsule when ``capsule``, delayed central enhancement, a necrotic core in some large tumours;
- internal texture: a Gaussian random field whose amplitude and correlation length are slightly
  larger in P53-mutated tumours (distributions that overlap widely), so radiomics and a CNN find a
  real but weak signal;
- the phases are acquired in separate breath-holds: each phase (and its mask) is shifted by about a
  millimetre from the others;
- repeated ROIs (:data:`REPEATED_MASK_SETS`): for some patients a second reader's and a second
  session's masks, whose outline is the primary one moved by 0.5 to 2 mm (see
  :func:`repeated_mask`).

Several simulated scanners differ in voxel spacing, intensity scale and offset, noise (Rician) and a
smooth multiplicative bias field, so that N4 correction, resampling, normalisation and harmonisation
matter as they did in the study (seven 1.5 T and 3 T scanners). :data:`EXTERNAL_SCANNERS`, absent
from those, add a reconstruction kernel, thick slices, correlated noise and other enhancement
ratios between phases: an external site (see :mod:`._scanners`). ``field_of_view="abdomen"`` gives
clinical-size volumes.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from joblib import Parallel, delayed
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from .._settings import DEFAULT_PHASES
from ._clinical import STUDY_PREVALENCE, draw_clinical
from ._scanners import (
    EXTERNAL_SCANNERS,
    SCANNERS,
    Scanner,
    acquire,
    resolve_field_of_view,
    resolve_scanners,
    volume_geometry,
)

__all__ = [
    "EXTERNAL_SCANNERS",
    "REPEATED_MASK_SETS",
    "SCANNERS",
    "Scanner",
    "make_synthetic_cohort",
]

PHASES = DEFAULT_PHASES
LABEL_COLUMN = "p53"

#: The repeated ROIs of the synthetic cohort: mask set name -> range (mm) of the outline's shift.
#: A second reader's outline moves further from the primary (the first reader's first session)
#: than the same reader's a week later does.
REPEATED_MASK_SETS = {"reader2": (0.75, 2.0), "session2": (0.5, 1.25)}
#: The study's share of patients with repeated ROIs: 30 of 320.
_STUDY_REPEATED = (30, 320)
# Correlation length (mm) of the shift along the outline, in plane; slices are drawn apart.
_SHIFT_CORRELATION_MM = 6.0


# Relative enhancement of each structure per phase (AP, PVP, DP).
_BODY = (0.55, 0.62, 0.60)
_LIVER = (1.0, 1.5, 1.35)
_SPLEEN = (1.35, 1.45, 1.3)
_AORTA = (3.0, 1.8, 1.4)
_PORTAL = (0.9, 2.1, 1.5)
_TEXTURE_PHASE_GAIN = (1.0, 0.8, 0.7)
# The tumour texture's class signal, (mean, SD) without and with the mutation: its amplitude
# (relative to the tumour's level) and correlation length (mm). A quarter of an SD apart or less
# (the study's radiomics model found no signal that held in validation), below the scanners'
# effects on texture.
_TEXTURE_AMPLITUDE = ((0.12, 0.04), (0.13, 0.04))
_TEXTURE_CORRELATION_MM = ((2.5, 0.6), (2.6, 0.6))
# The arterial level of a rim-APHE tumour's core, drawn per tumour (its rim: 1.9; a diffuse
# hyperenhancement: 1.7): from a marked hypo-enhancing core to a faint rim a reader still calls
# rim-APHE, so the images carry the reader's call imperfectly.
_RIM_CORE = (0.75, 1.45)


def _grid(shape, spacing, shift):
    """Physical coordinates (mm, centred on the field of view) of voxel centres, numpy order z, y, x."""
    axes = [
        (np.arange(n) + 0.5) * s - n * s / 2.0 - d
        for n, s, d in zip(shape, spacing, shift, strict=True)
    ]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _ellipsoid(z, y, x, centre, radii):
    cz, cy, cx = centre
    rz, ry, rx = radii
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2


def _tumour_geometry(rng, ltd, fov_size):
    """Centre (mm), semi-axes (mm), in-plane rotation and lobulation of one tumour."""
    a = ltd / 2.0
    radii = np.array(
        [a * rng.uniform(0.7, 0.95), a * rng.uniform(0.8, 1.0), a]
    )  # z, y, x; x largest
    angle = rng.uniform(0, np.pi)
    # Inside the right liver lobe (image left), kept within the field of view.
    half = np.asarray(fov_size, dtype=float)[::-1] / 2.0
    centre = np.array([rng.uniform(-15, 15), rng.uniform(-20, 20), rng.uniform(-50, -15)])
    centre = np.clip(centre, -half + radii.max() + 4, half - radii.max() - 4)
    lobes = rng.normal(0, 0.06, size=6)
    return centre, radii, angle, lobes


def _tumour_radius(z, y, x, centre, radii, angle, lobes):
    """Normalised radius rho (< 1 inside the tumour), with a lobulated outline."""
    dz, dy, dx = z - centre[0], y - centre[1], x - centre[2]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    pz, py, px = dz / radii[0], v / radii[1], u / radii[2]
    rho = np.sqrt(pz**2 + py**2 + px**2)
    inv = 1.0 / np.maximum(rho, 1e-6)
    nz, ny, nx = pz * inv, py * inv, px * inv
    outline = (
        1.0
        + lobes[0] * nx * ny
        + lobes[1] * ny * nz
        + lobes[2] * nx * nz
        + lobes[3] * (nx**2 - ny**2)
        + lobes[4] * nz**2
        + lobes[5] * nx
    )
    return rho / outline


def _render_phase(k, geo, patient, tumour, texture, liver_texture, body_axes):
    """Signal (before scanner effects) and mask of phase `k`; `body_axes`: (y, x) in mm."""
    z, y, x = geo
    signal = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=np.float32)

    def full(region):
        return np.broadcast_to(region, signal.shape)

    body = full(((y / body_axes[0]) ** 2 + (x / body_axes[1]) ** 2) < 1.0)
    signal[body] = _BODY[k]
    liver = full(_ellipsoid(z, y, x, (0.0, -5.0, -28.0), (52.0, 62.0, 58.0)) < 1.0)
    signal[liver] = _LIVER[k] * (1.0 + liver_texture[liver])
    spleen = full(_ellipsoid(z, y, x, (5.0, 10.0, 58.0), (40.0, 32.0, 20.0)) < 1.0)
    signal[spleen & body] = _SPLEEN[k]
    signal[full(((y - 38.0) / 9.0) ** 2 + ((x - 12.0) / 9.0) ** 2 < 1.0)] = _AORTA[k]
    signal[full(((y - 8.0) / 6.0) ** 2 + ((x + 8.0) / 6.0) ** 2 < 1.0) & liver] = _PORTAL[k]

    rho = full(_tumour_radius(z, y, x, *tumour[:4]))
    inside = rho < 1.0
    if not inside.any():  # a tumour smaller than a voxel still marks its centre voxel
        inside = rho <= rho.min()
    liver_level = _LIVER[k]
    rim = rho > 0.72
    if k == 0:
        level = np.where(rim, 1.9, tumour[5]) if patient["rim_aphe"] else np.full(rho.shape, 1.7)
    else:
        wash = patient["washout"]
        low = 1.1 if k == 1 else 0.95
        if wash == "nonperipheral":
            level = np.full(rho.shape, low)
        elif wash == "peripheral":
            level = np.where(rim, low - 0.1, liver_level - 0.05)
        else:
            level = np.full(rho.shape, liver_level)
        if k == 2 and patient["delayed_central_enhancement"]:
            level = np.where(rho < 0.5, level + 0.5, level)
        if patient["capsule"]:
            shell = 2.5 / tumour[1].max()  # a 2.5-mm enhancing capsule inside the outline
            level = np.where(rho > 1.0 - shell, 1.9 if k == 1 else 2.0, level)
    if tumour[4]:  # necrotic core
        level = np.where(rho < 0.35, 0.45, level)
    level = level * (1.0 + _TEXTURE_PHASE_GAIN[k] * texture)
    signal[inside] = level[inside]
    return signal, inside


def repeated_mask(geo, spacing, tumour, shift_range, rng):
    """A repeated ROI of one phase: the primary outline moved by a shift that varies along it.

    The shift (mm) at each point of the outline lies in `shift_range`: its magnitude is a smooth
    Gaussian random field, correlated over :data:`_SHIFT_CORRELATION_MM` in plane and nearly
    independent from one slice to the next (a reader draws slice by slice), mapped to the range
    through the normal CDF; its sign, drawn once per mask, grows or shrinks the ROI (a reader who
    draws wider or tighter). The outline moves along the ray from the tumour's centre: a point at
    distance ``r`` from it, whose ray crosses the primary outline at ``R``, is inside when
    ``r < R + shift``. Computed from the continuous tumour model, not from the voxelised primary
    mask, so a shift below a voxel still moves the outline where it crosses voxel centres.
    """
    z, y, x = geo
    shape = np.broadcast_shapes(z.shape, y.shape, x.shape)
    rho = np.broadcast_to(_tumour_radius(z, y, x, *tumour[:4]), shape)
    centre = tumour[0]
    distance = np.broadcast_to(
        np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2), shape
    )
    sigma = np.array([0.3, *(_SHIFT_CORRELATION_MM / np.asarray(spacing[1:]))])
    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma)
    field /= max(float(field.std()), 1e-12)
    low, high = shift_range
    shift = (low + (high - low) * ndtr(field)) * (1.0 if rng.random() < 0.5 else -1.0)
    boundary = distance / np.maximum(rho, 1e-6)  # R: where the ray crosses the primary outline
    inside = distance < boundary + shift
    if not inside.any():  # a tumour smaller than a voxel still marks its centre voxel
        inside = rho <= rho.min()
    return inside.astype(np.uint8)


def _render_patient(patient, scanner, voxel_scale, seed, repeat_seed, fov):
    """Yield the arrays of one patient, phase by phase: ``(column, int16 image or uint8 mask)``.

    One phase's arrays at a time are held (clinical-size volumes). With `repeat_seed`, also the
    masks of :data:`REPEATED_MASK_SETS` (column ``f"{phase}_mask_{set}"``), drawn from their own
    stream: the images and primary masks are those drawn without it.
    """
    rng = np.random.default_rng(seed)
    repeat_rng = None if repeat_seed is None else np.random.default_rng(repeat_seed)
    shape, spacing_xyz, _ = volume_geometry(scanner, voxel_scale, fov)
    spacing = np.asarray(spacing_xyz)[::-1]  # z, y, x

    centre, radii, angle, lobes = _tumour_geometry(rng, float(patient["ltd"]), fov.size)
    necrosis = patient["ltd"] > 50 and rng.random() < 0.5
    rim_core = rng.uniform(*_RIM_CORE)  # used where rim-APHE: how hypo-enhancing the core is
    tumour = (centre, radii, angle, lobes, necrosis, rim_core)

    # Texture: Gaussian random fields, unit variance, correlation length in mm.
    mutated = patient[LABEL_COLUMN] == 1
    amplitude = max(0.02, rng.normal(*_TEXTURE_AMPLITUDE[mutated]))
    corr_mm = max(1.0, rng.normal(*_TEXTURE_CORRELATION_MM[mutated]))

    def field(corr):
        white = rng.standard_normal(shape).astype(np.float32)
        smooth = gaussian_filter(white, sigma=np.maximum(corr / spacing, 0.3))
        return smooth / max(float(smooth.std()), 1e-6)

    texture = amplitude * field(corr_mm)
    liver_texture = 0.04 * field(4.0)

    # One bias field for the three phases (same coil): exp of a random low-order polynomial.
    z, y, x = _grid(shape, spacing, (0.0, 0.0, 0.0))
    size = fov.size
    nz, ny, nx = z / (size[2] / 2), y / (size[1] / 2), x / (size[0] / 2)
    terms = [nx, ny, nz, nx * ny, nx**2 - 0.33, ny**2 - 0.33, ny * nz]
    coef = rng.normal(size=len(terms))
    poly = sum(c * t for c, t in zip(coef, terms, strict=True))
    poly = poly / np.abs(poly).max()
    strength = scanner.bias * rng.uniform(0.7, 1.3)
    bias = np.exp(strength * poly).astype(np.float32)
    del poly

    for k, phase in enumerate(PHASES):
        shift = rng.normal(0.0, 1.0, size=3)  # breath-hold misregistration, mm
        geo = _grid(shape, spacing, shift)
        signal, inside = _render_phase(k, geo, patient, tumour, texture, liver_texture, fov.body)
        yield phase, acquire(signal, bias, scanner, k, _BODY[k], spacing, rng)
        del signal
        yield f"{phase}_mask", inside.astype(np.uint8)
        if repeat_rng is not None:
            for name, shifts in REPEATED_MASK_SETS.items():
                mask = repeated_mask(geo, spacing, tumour, shifts, repeat_rng)
                yield f"{phase}_mask_{name}", mask


def _write(array, spacing, origin, path):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), True, 1)


def _make_patient(directory, pid, patient, scanner, voxel_scale, seed, repeat_seed, fov):
    """Write one patient's volumes as they are drawn, one at a time; return the cells."""
    _, spacing, origin = volume_geometry(scanner, voxel_scale, fov)
    cells = {}
    for column, array in _render_patient(patient, scanner, voxel_scale, seed, repeat_seed, fov):
        relative = f"images/{pid}_{column}.nii.gz"
        _write(array, spacing, origin, directory / relative)
        cells[column] = relative
    return cells


def _balanced_scanners(y, n_scanners, rng):
    """Each patient's scanner (an index): within each class, the scanners take turns.

    In each class, the patients are dealt out to the scanners in turn, from a random first
    scanner, in random order: each scanner then holds ``m // n_scanners`` or one more of a class
    of ``m`` patients, so the scanner mix and each scanner's class balance are those of the
    whole cohort, whatever its size (no scanner predicts the label by chance).
    """
    index = np.empty(y.size, dtype=int)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        index[members] = (rng.integers(n_scanners) + np.arange(members.size)) % n_scanners
    return index


def _repeated_patients(n_repeated, n_patients, rng):
    """Indices of the patients with repeated ROIs, sorted; `n_repeated` checked."""
    if n_repeated is None:
        n_repeated = n_patients * _STUDY_REPEATED[0] // _STUDY_REPEATED[1]
        n_repeated = 0 if n_repeated < 2 else n_repeated  # an ICC needs 2 patients
    elif not isinstance(n_repeated, int | np.integer) or not 0 <= n_repeated <= n_patients:
        raise ValueError(
            f"n_repeated must be None or an integer from 0 to n_patients={n_patients}, "
            f"got {n_repeated!r}"
        )
    if n_repeated == 0:
        return set()
    return set(rng.choice(n_patients, size=int(n_repeated), replace=False).tolist())


def make_synthetic_cohort(
    directory,
    n_patients=320,
    random_state=0,
    *,
    n_scanners=None,
    scanners=None,
    field_of_view="default",
    voxel_scale=1.0,
    prevalence=STUDY_PREVALENCE,
    n_repeated=None,
    n_jobs=None,
    verbose=0,
):
    """Write a synthetic three-phase DCE-MRI cohort and return its cohort table and labels.

    Per patient: arterial, portal venous and delayed phase volumes and a tumour mask per phase
    (NIfTI, ``.nii.gz``), and a row of clinical variables drawn to match the study's Table 1 by
    class, with Table 2's associations (LTD and rim-APHE the independent predictors). The tumour's
    appearance follows its variables and its texture differs weakly by class; simulated scanners
    differ in spacing, intensity scale, noise and bias field. See the module's documentation and
    the user guide for the generative model.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder to write into (created if needed): ``cohort.csv`` and ``images/``. Existing files of
        the same names are overwritten.
    n_patients : int, default=320
        Number of patients (the study's 320).
    random_state : int, default=0
        Seed. The same seed gives byte-identical files, whatever `n_jobs`.
    n_scanners : int or None, default=None
        How many of the simulated :data:`SCANNERS` to use (1 to 7; the study had seven): the
        first `n_scanners`. ``None``: all seven, or, with `scanners`, as many as it holds (an
        integer other than its length is refused: pass one or the other).
    scanners : sequence of Scanner or str, default=None
        The scanners to draw the patients' series from, the patients of each class dealt out to
        them in turn (every scanner holds the same share of each class, to one patient):
        :class:`Scanner` objects or names of :data:`SCANNERS` and
        :data:`EXTERNAL_SCANNERS`, which may be absent from the development cohort's scanners (a
        synthetic external site: ``scanners=EXTERNAL_SCANNERS``). ``None``: the first
        `n_scanners` of :data:`SCANNERS`; ``SCANNERS[:k]`` gives the files of
        ``n_scanners=k``. Names must be distinct, and a :class:`Scanner` named like a built-in
        one must equal it.
    field_of_view : {"default", "abdomen"}, default="default"
        ``"default"``: the upper abdomen around the liver, 176 x 160 x 112 mm, at each scanner's
        spacing (CPU-sized volumes). ``"abdomen"``: clinical-size series, 380 x 310 x 200 mm at
        0.74 x 0.74 x 3 mm for every scanner (514 x 419 x 67 voxels, about 29 MB of int16 per
        volume; the scanners' other settings apply), the body's outline filling it; the organs
        and tumours keep their sizes (see :data:`FIELDS_OF_VIEW`). Volumes are written one at a
        time, so memory holds one patient's phase, whatever `n_patients`.
    voxel_scale : float, default=1.0
        Multiplies every scanner's voxel spacing: 2.0 gives volumes with 8 times fewer voxels, for
        test cohorts generated in seconds. The field of view and tumour sizes stay the same.
    prevalence : float, default=183/320
        Share of P53-mutated patients: exactly ``round(n_patients * prevalence)`` of them, so any
        `n_patients` keeps the study's class balance.
    n_repeated : int or None, default=None
        Patients, drawn at random, who get repeated ROIs: a second reader's and a second session's
        mask of every phase (mask sets ``"reader2"`` and ``"session2"``, see Notes). ``None``: the
        study's share, 30 of 320 (``n_patients * 30 // 320``: 30 for the default 320 patients),
        or none where that is under 2 (an ICC needs two patients); ``0``: none, and the files are
        those of a cohort without the parameter.
    n_jobs : int, default=None
        Patients generated in parallel, through joblib: ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context, ``-1`` all cores. In a
        ``parallel_config(backend="dask")`` context the patients are generated on the cluster's
        workers, which write the files themselves: `directory` must then be on a filesystem every
        worker reaches by the same path.
    verbose : int, default=0
        joblib's progress messages.

    Returns
    -------
    X : pandas.DataFrame
        The cohort table, indexed by ``patient_id``: columns ``ap, ap_mask, pvp, pvp_mask, dp,
        dp_mask`` (absolute paths) and the clinical columns ``age, gender, afp, cea, ca199,
        edmondson_grade, mvi, ltd, rim_aphe, washout, delayed_central_enhancement, capsule,
        scanner``.
    y : pandas.Series
        ``p53`` labels (1 = mutated), indexed like `X`. ``cohort.csv`` holds the same table with a
        ``patient_id`` and a ``p53`` column and paths relative to its folder; read it back with
        :func:`p53radiomics.io.read_cohort_csv` (``label="p53"``).

    Notes
    -----
    **Repeated ROIs.** With patients drawn by `n_repeated`, the columns ``ap_mask_reader2,
    pvp_mask_reader2, dp_mask_reader2, ap_mask_session2, pvp_mask_session2, dp_mask_session2``
    follow ``dp_mask`` (empty for the other patients: ``None`` in `X`, an empty cell in
    ``cohort.csv``); see :func:`p53radiomics.io.phase_columns` for the naming. Each is the primary
    outline of its phase moved by a shift that varies along the outline and from slice to slice,
    0.75 to 2 mm for the second reader and 0.5 to 1.25 mm for the second session
    (:data:`REPEATED_MASK_SETS`), so the second session agrees better with the primary ROI. They
    are drawn from a random stream of their own: the images, primary masks and clinical values
    are those of the same `random_state` with ``n_repeated=0``.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=4, voxel_scale=3.0)
    >>> X.shape, y.name
    ((4, 19), 'p53')
    >>> X.columns[:6].tolist()
    ['ap', 'ap_mask', 'pvp', 'pvp_mask', 'dp', 'dp_mask']

    An external site, from scanners the cohort above has none of:

    >>> from p53radiomics.datasets import EXTERNAL_SCANNERS
    >>> X_ext, y_ext = make_synthetic_cohort(
    ...     tempfile.mkdtemp(), n_patients=6, voxel_scale=3.0, scanners=EXTERNAL_SCANNERS
    ... )
    >>> sorted(set(X_ext["scanner"]) - {s.name for s in EXTERNAL_SCANNERS})
    []
    """
    if not isinstance(n_patients, int | np.integer) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    chosen_scanners = resolve_scanners(scanners, n_scanners)
    fov = resolve_field_of_view(field_of_view)
    if not voxel_scale > 0:
        raise ValueError(f"voxel_scale must be positive, got {voxel_scale!r}")
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must lie strictly between 0 and 1, got {prevalence!r}")
    directory = Path(directory).resolve()  # absolute: the workers write into it, whatever their cwd
    (directory / "images").mkdir(parents=True, exist_ok=True)

    seeds = np.random.SeedSequence(random_state)
    # a fourth child for the repeated ROIs: the first three are those spawn(3) gives
    clinical_seed, scanner_seed, image_seed, repeat_seed = seeds.spawn(4)
    clinical, y = draw_clinical(n_patients, np.random.default_rng(clinical_seed), prevalence)
    n_used = len(chosen_scanners)
    scanner_index = _balanced_scanners(y, n_used, np.random.default_rng(scanner_seed))
    ids = [f"P{i + 1:04d}" for i in range(n_patients)]
    clinical.insert(
        len(clinical.columns), "scanner", [chosen_scanners[s].name for s in scanner_index]
    )
    clinical.insert(0, "patient_id", ids)
    clinical[LABEL_COLUMN] = y
    patient_seeds = image_seed.spawn(n_patients)
    chosen_seed, *repeat_seeds = repeat_seed.spawn(n_patients + 1)
    chosen = _repeated_patients(n_repeated, n_patients, np.random.default_rng(chosen_seed))
    repeat_seeds = [seed if i in chosen else None for i, seed in enumerate(repeat_seeds)]

    rows = Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(_make_patient)(
            directory, pid, row, chosen_scanners[s], voxel_scale, seed, repeat, fov
        )
        for pid, (_, row), s, seed, repeat in zip(
            ids, clinical.iterrows(), scanner_index, patient_seeds, repeat_seeds, strict=True
        )
    )
    paths = pd.DataFrame(rows)  # the columns of the first patient with repeated ROIs come last
    paths = paths[[*(c for c in paths.columns if "_mask_" not in c), *_repeated_columns(paths)]]
    table = pd.concat(
        [clinical[["patient_id"]], paths, clinical.drop(columns="patient_id")], axis=1
    )
    table.to_csv(directory / "cohort.csv", index=False, lineterminator="\n")

    X = table.set_index("patient_id")
    for column in paths.columns:
        X[column] = [None if pd.isna(p) else str(directory / p) for p in X[column]]
    y = X.pop(LABEL_COLUMN)
    return X, y


def _repeated_columns(paths):
    """The repeated mask columns, set by set in the order of :data:`REPEATED_MASK_SETS`."""
    return [f"{p}_mask_{s}" for s in REPEATED_MASK_SETS for p in PHASES if f"{p}_mask_{s}" in paths]
