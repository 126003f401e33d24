"""The simulated scanners of the synthetic cohort, the fields of view and the acquisition.

A :class:`Scanner` turns a noise-free signal into the grey values of one series: point-spread and
slice profile (partial volume), enhancement between phases, bias field, the reconstruction kernel
and (possibly correlated) Rician noise, then the scanner's grey scale. :data:`SCANNERS` are the
development cohort's seven; :data:`EXTERNAL_SCANNERS` are others, absent from them, to draw an
external site from (``make_synthetic_cohort(..., scanners=EXTERNAL_SCANNERS)``).
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from .._settings import DEFAULT_PHASES

__all__ = [
    "EXTERNAL_SCANNERS",
    "FIELDS_OF_VIEW",
    "SCANNERS",
    "FieldOfView",
    "Scanner",
    "acquire",
    "resolve_field_of_view",
    "resolve_scanners",
    "scanner_table",
    "volume_geometry",
]


@dataclass(frozen=True)
class Scanner:
    """Acquisition settings of one simulated scanner.

    The fields after `bias` default to an ideal scanner's: a 0.5-voxel point-spread function, no
    slice profile beyond it, no reconstruction kernel, white noise, the generator's own
    enhancement ratios.

    Parameters
    ----------
    name : str
        Written in the ``scanner`` column.
    spacing : tuple of float
        Voxel spacing (x, y, z) in mm.
    scale : float
        Grey value of unit signal (the liver in the arterial phase).
    offset : float
        Added to every voxel.
    noise : float
        Noise standard deviation, as a fraction of `scale`.
    bias : float
        Strength of the multiplicative bias field: the log field spans about ``[-bias, bias]``.
    psf : float, default=0.5
        Standard deviation (voxels) of the Gaussian point-spread function.
    slice_thickness : float or None, default=None
        Slice thickness (mm). ``None``: the point-spread function alone through plane. Otherwise
        each slice averages a slab of this thickness (partial volume), approximated by a Gaussian
        of the slab's standard deviation ``slice_thickness / sqrt(12)`` added in quadrature to
        `psf` along z; a thickness above the slice spacing gives overlapping slices.
    kernel : float, default=0.0
        Reconstruction kernel, applied in plane to the complex data (signal and noise) before the
        magnitude is taken: ``0`` none; ``> 0`` sharpens (an unsharp mask of this amount, 1-voxel
        Gaussian); ``< 0`` smooths (a Gaussian of standard deviation ``-kernel`` voxels). Either
        changes the texture and correlates the noise.
    noise_correlation : float, default=0.0
        In-plane correlation length (voxels, a Gaussian's standard deviation) of the noise before
        the kernel, at the same standard deviation `noise`; ``0``: white noise.
    enhancement : tuple of float, default=(1.0, 1.0, 1.0)
        Per phase (AP, PVP, DP), the factor on the signal above the unenhanced soft tissue's (the
        body's level in that phase): field strength and protocol change the enhancement ratios
        between phases, which a grey-scale normalisation does not undo.
    """

    name: str
    spacing: tuple
    scale: float
    offset: float
    noise: float
    bias: float
    psf: float = 0.5
    slice_thickness: float | None = None
    kernel: float = 0.0
    noise_correlation: float = 0.0
    enhancement: tuple = (1.0, 1.0, 1.0)


#: The simulated scanners of the development cohort; the first `n_scanners` are used. They differ
#: in spacing, grey scale and offset, Rician noise and bias field (the study had seven 1.5 T and
#: 3 T scanners from several vendors), and in what changes MR texture between scanners in ways
#: that N4 correction, resampling and z-scoring do not undo:
#:
#: - ``S1`` (1.5 T): a smoothing reconstruction kernel and a weaker arterial enhancement;
#: - ``S2`` (3 T): a sharpening kernel and a stronger arterial enhancement;
#: - ``S3`` (1.5 T, older): thick overlapping slices (8 mm at a 6-mm spacing: partial volume)
#:   and correlated noise;
#: - ``S4`` (3 T): thin slices, correlated noise and a mildly sharp kernel;
#: - ``S5`` (1.5 T): a strongly smoothing kernel and late, stronger delayed enhancement;
#: - ``S6`` (3 T): a strongly sharpening kernel, white noise;
#: - ``S7`` (1.5 T): slightly correlated noise, enhancement ratios of its own.
#:
#: Their Kruskal-Wallis share of radiomics features with a scanner effect after preprocessing,
#: before and after ComBat, is measured by ``benchmarks/bench_harmonization.py``.
SCANNERS = (
    Scanner("S1", (1.875, 1.875, 5.0), 900.0, 40.0, 0.035, 0.25, kernel=-0.6,
            enhancement=(0.85, 1.0, 1.0)),
    Scanner("S2", (1.5, 1.5, 4.0), 1400.0, 0.0, 0.025, 0.15, kernel=0.6,
            enhancement=(1.2, 1.0, 0.95)),
    Scanner("S3", (2.0, 2.0, 6.0), 350.0, 20.0, 0.05, 0.35, slice_thickness=8.0,
            noise_correlation=1.0),
    Scanner("S4", (1.6, 1.6, 3.0), 2200.0, 100.0, 0.03, 0.20, kernel=0.3,
            noise_correlation=1.5, enhancement=(1.1, 1.05, 1.0)),
    Scanner("S5", (2.2, 2.2, 5.0), 600.0, 0.0, 0.06, 0.30, kernel=-1.0,
            enhancement=(0.9, 1.0, 1.15)),
    Scanner("S6", (1.4, 1.4, 4.5), 1100.0, 60.0, 0.04, 0.40, kernel=0.9,
            enhancement=(1.15, 0.95, 0.9)),
    Scanner("S7", (1.8, 1.8, 3.5), 1800.0, 0.0, 0.045, 0.18, noise_correlation=0.7,
            enhancement=(0.95, 1.1, 1.05)),
)  # fmt: skip

#: Scanners of a synthetic external site, none of them in :data:`SCANNERS`, each with settings
#: none of those has (finer or coarser voxels, a sharper kernel, thicker slices, more strongly
#: correlated noise, other enhancement ratios), which survive N4 correction, resampling and
#: z-scoring:
#:
#: - ``E1``, a 3 T scanner with a sharp reconstruction kernel (noise and texture edges enhanced)
#:   and a stronger arterial enhancement relative to the later phases;
#: - ``E2``, a 1.5 T scanner with thick overlapping slices (8 mm at a 6-mm spacing: partial
#:   volume through plane), a smooth kernel and correlated noise, and a weaker arterial phase;
#: - ``E3``, an older 1.5 T scanner with strongly correlated noise at a high level, a strong bias
#:   field and a weak, late enhancement.
EXTERNAL_SCANNERS = (
    Scanner("E1", (1.25, 1.25, 3.0), 2600.0, 0.0, 0.04, 0.30, kernel=0.8,
            enhancement=(1.25, 1.0, 0.9)),
    Scanner("E2", (1.9, 1.9, 6.0), 800.0, 30.0, 0.03, 0.20, slice_thickness=8.0, kernel=-0.7,
            noise_correlation=1.0, enhancement=(0.8, 1.0, 1.05)),
    Scanner("E3", (1.7, 1.7, 5.0), 500.0, 10.0, 0.07, 0.45, noise_correlation=2.0,
            enhancement=(0.85, 0.9, 1.1)),
)  # fmt: skip


@dataclass(frozen=True)
class FieldOfView:
    """The volume every series of a cohort covers.

    Parameters
    ----------
    size : tuple of float
        Extent (x, y, z) in mm.
    spacing : tuple of float or None
        Voxel spacing (x, y, z) in mm of every scanner's series; ``None``: each scanner's own.
    body : tuple of float
        Semi-axes (y, x) in mm of the body's outline (the organs keep their sizes).
    """

    size: tuple
    spacing: tuple | None
    body: tuple


#: The fields of view of :func:`~p53radiomics.datasets.make_synthetic_cohort`: ``"default"`` the
#: upper abdomen around the liver at each scanner's spacing (CPU-sized volumes); ``"abdomen"`` a
#: clinical-size series, 380 x 310 x 200 mm at 0.74 x 0.74 x 3 mm (514 x 419 x 67 voxels) for
#: every scanner, whose body fills the field of view.
FIELDS_OF_VIEW = {
    "default": FieldOfView((176.0, 160.0, 112.0), None, (75.0, 86.0)),
    "abdomen": FieldOfView((380.0, 310.0, 200.0), (0.74, 0.74, 3.0), (135.0, 175.0)),
}


def resolve_field_of_view(field_of_view):
    """The :class:`FieldOfView` named `field_of_view`; anything else is refused."""
    if not isinstance(field_of_view, str) or field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(
            f"field_of_view must be one of {sorted(FIELDS_OF_VIEW)}, got {field_of_view!r}"
        )
    return FIELDS_OF_VIEW[field_of_view]


def volume_geometry(scanner, voxel_scale=1.0, field_of_view="default"):
    """Shape (z, y, x), spacing (x, y, z, mm) and origin of a scanner's series.

    Examples
    --------
    >>> from p53radiomics.datasets._scanners import SCANNERS, volume_geometry
    >>> shape, spacing, origin = volume_geometry(SCANNERS[0], field_of_view="abdomen")
    >>> shape, spacing
    ((67, 419, 514), (0.74, 0.74, 3.0))
    """
    fov = resolve_field_of_view(field_of_view) if isinstance(field_of_view, str) else field_of_view
    spacing_xyz = np.asarray(scanner.spacing if fov.spacing is None else fov.spacing) * voxel_scale
    spacing = spacing_xyz[::-1]  # z, y, x
    size = np.asarray(fov.size, dtype=float)
    shape = tuple(int(max(8, round(f / s))) for f, s in zip(size[::-1], spacing, strict=True))
    origin = tuple(
        float(-n * s / 2.0 + s / 2.0) for n, s in zip(shape[::-1], spacing_xyz, strict=True)
    )
    return shape, tuple(float(s) for s in spacing_xyz), origin


def _positive(value, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (value >= 0 if allow_zero else value > 0)


def _check_scanner(scanner):
    """Refuse a scanner whose settings would give nonsense images, naming it and the field."""
    triples = {"spacing": scanner.spacing, "enhancement": scanner.enhancement}
    bad = [
        name
        for name, value in triples.items()
        if not (
            isinstance(value, tuple | list)
            and len(value) == len(DEFAULT_PHASES)
            and all(_positive(v) for v in value)
        )
    ]
    bad += [f for f in ("scale",) if not _positive(getattr(scanner, f))]
    bad += [
        f
        for f in ("noise", "bias", "psf", "noise_correlation")
        if not _positive(getattr(scanner, f), allow_zero=True)
    ]
    if scanner.slice_thickness is not None and not _positive(scanner.slice_thickness):
        bad.append("slice_thickness")
    if not (isinstance(scanner.offset, numbers.Real) and math.isfinite(scanner.offset)):
        bad.append("offset")
    if not (isinstance(scanner.kernel, numbers.Real) and math.isfinite(scanner.kernel)):
        bad.append("kernel")
    if not isinstance(scanner.name, str) or not scanner.name:
        bad.append("name")
    if bad:
        raise ValueError(f"scanner {scanner.name!r}: invalid {', '.join(bad)} in {scanner!r}")


def resolve_scanners(scanners, n_scanners):
    """The scanners a cohort draws from, from `scanners` (objects or names) or `n_scanners`.

    ``scanners=None`` takes the first `n_scanners` of :data:`SCANNERS` (all seven for ``None``).
    With `scanners` given, `n_scanners` must be ``None`` or its length; a name is looked up in
    :data:`SCANNERS` and :data:`EXTERNAL_SCANNERS`; a :class:`Scanner` object named like one of
    those must equal it, and names must be unique (the ``scanner`` column is the batch a
    harmonisation corrects).
    """
    if scanners is None:
        n = len(SCANNERS) if n_scanners is None else n_scanners
        if not isinstance(n, int | np.integer) or not 1 <= n <= len(SCANNERS):
            raise ValueError(f"n_scanners must be between 1 and {len(SCANNERS)}, got {n!r}")
        return SCANNERS[:n]
    if isinstance(scanners, str | Scanner) or not hasattr(scanners, "__len__"):
        raise TypeError(
            "scanners must be a sequence of Scanner objects or scanner names, such as "
            f"EXTERNAL_SCANNERS or ['S1', 'E2'], got {scanners!r}"
        )
    known = {s.name: s for s in (*SCANNERS, *EXTERNAL_SCANNERS)}
    resolved = []
    for item in scanners:
        if isinstance(item, str):
            if item not in known:
                raise ValueError(f"unknown scanner name {item!r}; known: {sorted(known)}")
            item = known[item]
        elif not isinstance(item, Scanner):
            raise TypeError(f"scanners holds {item!r}: expected a Scanner or a scanner name")
        _check_scanner(item)
        if item.name in known and known[item.name] != item:
            raise ValueError(
                f"scanner {item.name!r} differs from the built-in scanner of that name: "
                "give it another name"
            )
        resolved.append(item)
    names = [s.name for s in resolved]
    if not resolved or len(set(names)) < len(names):
        raise ValueError(f"scanners must be a non-empty sequence of distinct scanners, got {names}")
    if n_scanners is not None and n_scanners != len(resolved):
        raise ValueError(
            f"n_scanners={n_scanners!r} conflicts with the {len(resolved)} scanners given: "
            "pass one or the other (n_scanners=None with scanners)"
        )
    return tuple(resolved)


def scanner_table(scanners=None):
    """The settings of simulated scanners, one row per scanner: what each does to its images.

    Parameters
    ----------
    scanners : sequence of Scanner or str, default=None
        Scanners or their names, as :func:`~p53radiomics.datasets.make_synthetic_cohort` takes
        them; ``None``: the seven :data:`SCANNERS`.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by ``scanner``: ``spacing_mm`` (x, y, z), ``scale``, ``offset``, ``noise``,
        ``bias`` (what N4 correction, resampling and z-scoring remove) and ``psf``,
        ``slice_thickness_mm`` (``None``: the point-spread function alone), ``kernel`` (< 0
        smooths, > 0 sharpens), ``noise_correlation`` (voxels) and ``enhancement`` (AP, PVP, DP),
        which they do not remove (see :class:`Scanner`).

    Examples
    --------
    >>> from p53radiomics.datasets import EXTERNAL_SCANNERS, scanner_table
    >>> scanner_table(EXTERNAL_SCANNERS)[["kernel", "slice_thickness_mm", "noise_correlation"]]
             kernel  slice_thickness_mm  noise_correlation
    scanner
    E1          0.8                 NaN                0.0
    E2         -0.7                 8.0                1.0
    E3          0.0                 NaN                2.0
    """
    rows = [
        {
            "scanner": s.name,
            "spacing_mm": " x ".join(f"{v:g}" for v in s.spacing),
            "scale": s.scale,
            "offset": s.offset,
            "noise": s.noise,
            "bias": s.bias,
            "psf": s.psf,
            "slice_thickness_mm": np.nan if s.slice_thickness is None else s.slice_thickness,
            "kernel": s.kernel,
            "noise_correlation": s.noise_correlation,
            "enhancement": " / ".join(f"{v:g}" for v in s.enhancement),
        }
        for s in resolve_scanners(scanners, None)
    ]
    return pd.DataFrame(rows).set_index("scanner")


def _in_plane(data, kernel):
    """The reconstruction kernel in plane (axes y, x) of a (z, y, x) array."""
    if kernel > 0:
        return data + kernel * (data - gaussian_filter(data, sigma=(0.0, 1.0, 1.0)))
    return gaussian_filter(data, sigma=(0.0, -kernel, -kernel))


def acquire(signal, bias, scanner, phase, baseline, spacing, rng):
    """Grey values (int16) of one phase's noise-free `signal` on `scanner`.

    `baseline` is the unenhanced soft tissue's signal in this `phase` (an index into the
    scanner's `enhancement`), `spacing` the voxel spacing (z, y, x) in mm. A scanner at its
    default `psf`, `slice_thickness`, `kernel`, `noise_correlation` and `enhancement` is an
    ideal one: a Gaussian point-spread function and white Rician noise.
    """
    gain = scanner.enhancement[phase]
    if gain != 1.0:
        signal = signal + np.float32(gain - 1.0) * np.maximum(signal - np.float32(baseline), 0)
    psf = scanner.psf
    if scanner.slice_thickness is not None:
        slab = scanner.slice_thickness / math.sqrt(12.0) / float(spacing[0])
        psf = (math.hypot(psf, slab), psf, psf)
    signal = gaussian_filter(signal, sigma=psf)  # point-spread function and slice profile
    sigma = scanner.noise
    shape = signal.shape
    real = signal * bias + _noise(rng, sigma, shape, scanner.noise_correlation)
    imaginary = _noise(rng, sigma, shape, scanner.noise_correlation)
    if scanner.kernel != 0:
        real, imaginary = _in_plane(real, scanner.kernel), _in_plane(imaginary, scanner.kernel)
    noisy = np.hypot(real, imaginary)
    return np.clip(np.round(noisy * scanner.scale + scanner.offset), 0, 32767).astype(np.int16)


def _noise(rng, sigma, shape, correlation):
    """Gaussian noise of standard deviation `sigma`, white or correlated in plane."""
    noise = rng.normal(0, sigma, shape)
    if correlation > 0:
        noise = gaussian_filter(noise, sigma=(0.0, correlation, correlation))
        noise *= sigma / max(float(noise.std()), 1e-12)
    return noise
