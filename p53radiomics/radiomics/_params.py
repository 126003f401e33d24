"""PyRadiomics parameters: the study's default set, loading, validation and the feature names.

A parameter set is what PyRadiomics calls a parameter file: a mapping with the keys ``imageType``
(the original and filtered images), ``featureClass`` (the feature classes and, optionally, the
features of each) and ``setting`` (pre-processing and discretisation). It is validated here with
PyRadiomics's own schema, so a dict and a YAML file go through the same checks and give the same
extraction.

The feature names are computed from the parameters alone, in the order PyRadiomics returns them,
without extracting any case: shape features of the original image first, then, for each enabled
image type and each image it yields (e.g. the 8 wavelet decompositions), the features of each
enabled class.
"""

import contextlib
import copy
import functools
import json
import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from ..io import GEOMETRY_TOLERANCE, check_label

__all__ = ["DEFAULT_PARAMS_FILE", "feature_names", "load_params", "resolve_label", "split_label"]

#: The study's parameter file, shipped in the package (``p53radiomics/radiomics/study.yaml``).
DEFAULT_PARAMS_FILE = Path(str(resources.files("p53radiomics.radiomics").joinpath("study.yaml")))

_TOP_LEVEL_KEYS = ("imageType", "featureClass", "setting", "voxelSetting")
_SINGLE_IMAGE_TYPES = {
    "Original": "original",
    "Square": "square",
    "SquareRoot": "squareroot",
    "Logarithm": "logarithm",
    "Exponential": "exponential",
    "Gradient": "gradient",
}


@contextlib.contextmanager
def _silenced(name):
    """No record of logger `name` or its children is emitted inside the block (levels restored after)."""
    target = logging.getLogger(name)
    level = target.level
    target.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        target.setLevel(level)


def _canonical_json(data):
    return json.dumps(data, default=repr)  # key order kept: it is the order of the features


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(
        f"{value!r} ({type(value).__name__}) is not a parameter value PyRadiomics accepts"
    )


def _read_yaml(path):
    from ruamel.yaml import YAML  # installed with PyRadiomics (through pykwalify)
    from ruamel.yaml.error import YAMLError

    try:
        with open(path, encoding="utf-8") as fh:
            return YAML(typ="safe", pure=True).load(fh)
    except YAMLError as exc:
        raise ValueError(
            f"cannot parse the PyRadiomics parameter file {str(path)!r}: {exc}"
        ) from exc


def _schema_problems(data):
    """Problems found by PyRadiomics's schema (pykwalify), as a list of sentences."""
    import pykwalify.core
    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    with _silenced(
        "pykwalify"
    ):  # pykwalify logs each problem at ERROR level; we raise them instead
        with warnings.catch_warnings():
            # pykwalify loads PyRadiomics's schema functions with the deprecated load_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(data),
                schema_files=[schema_file],
                extensions=[schema_funcs],
            )
        try:
            core.validate(raise_exception=True)
        except Exception as exc:  # SchemaError, or the ValueError/TypeError of PyRadiomics's checks
            problems = [str(e) for e in getattr(core, "errors", [])]
            if not problems or not isinstance(exc, RuntimeError):
                reason = getattr(exc, "msg", None) or str(exc)
                problems.append(reason.replace("Schema validation failed:\n - ", "").strip())
            return problems
    return []


def _own_problems(data):
    """Checks PyRadiomics's schema cannot make, for the way p53radiomics calls it."""
    problems = []
    settings = data.get("setting") or {}
    image_types = data.get("imageType") or {}
    scopes = [("setting", settings)] + [(f"imageType/{k}", v or {}) for k, v in image_types.items()]
    for where, values in scopes:
        if values.get("label", 1) != 1:
            problems.append(
                f"{where}: label must be 1 (p53radiomics.io gives binary masks, 1 = ROI), got "
                f"{values['label']!r}: give RadiomicsExtractor(label=...) (or setting label to "
                "RadiomicsExtractor), which picks that label of the mask itself"
            )
        if values.get("label_channel", 0) != 0:
            problems.append(f"{where}: label_channel must be 0 (masks are scalar images)")
    if "geometryTolerance" in settings:
        problems.append(
            "setting geometryTolerance must not be set: p53radiomics checks each mask against its "
            f"image itself (p53radiomics.io.GEOMETRY_TOLERANCE, {GEOMETRY_TOLERANCE:g} of the "
            "smallest voxel spacing, the rule of every step) and hands PyRadiomics the mask on "
            "its image's grid; PyRadiomics's setting would only change SimpleITK's tolerance for "
            "the whole process"
        )
    force2d = bool(settings.get("force2D", False))
    classes = data.get("featureClass") or {}
    if "shape2D" in classes and not force2d:
        problems.append("featureClass shape2D needs setting force2D: true (the volumes are 3D)")
    if "LBP2D" in image_types:
        if not force2d and not (image_types["LBP2D"] or {}).get("force2D", False):
            problems.append("imageType LBP2D needs setting force2D: true (the volumes are 3D)")
        if not _importable("skimage"):
            problems.append(
                "imageType LBP2D needs the package scikit-image, which is not installed"
            )
    if "LBP3D" in image_types and not (_importable("trimesh") and _importable("scipy")):
        problems.append(
            "imageType LBP3D needs the packages scipy and trimesh; trimesh is not installed"
        )
    return problems


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@functools.lru_cache(maxsize=32)
def _validated(data_json, source):
    data = json.loads(data_json)
    problems = _schema_problems(data) or _own_problems(data)
    if problems:
        raise ValueError(f"invalid PyRadiomics parameters ({source}): " + "; ".join(problems))
    from radiomics import getFeatureClasses

    image_types = data.get("imageType") or {"Original": {}}
    classes = data.get("featureClass")
    if not classes:  # PyRadiomics enables every class; shape2D computes nothing unless force2D
        force2d = (data.get("setting") or {}).get("force2D", False)
        classes = {name: [] for name in getFeatureClasses() if name != "shape2D" or force2d}
    resolved = {
        "imageType": {k: dict(v or {}) for k, v in image_types.items()},
        "featureClass": {k: (list(v) if v else []) for k, v in classes.items()},
        "setting": dict(data.get("setting") or {}),
    }
    if data.get("voxelSetting"):
        resolved["voxelSetting"] = dict(data["voxelSetting"])
    return _canonical_json(resolved), resolved


def load_params(params=None):
    """Load and validate a PyRadiomics parameter set.

    Parameters
    ----------
    params : dict, str, os.PathLike or None, default=None
        A PyRadiomics parameter dict (keys ``imageType``, ``featureClass``, ``setting``, optionally
        ``voxelSetting``), the path of a PyRadiomics YAML (or JSON) parameter file, or ``None`` for
        the study's set (:data:`DEFAULT_PARAMS_FILE`).

    Returns
    -------
    params : dict
        A new dict with the three keys filled in as PyRadiomics fills them: no image type means
        ``{"Original": {}}``; no feature class means every class (``shape2D`` only with
        ``force2D``, as it computes nothing otherwise); a class with no feature list (``None``)
        means its non-deprecated features (stored as ``[]``). Loading it again gives it back.

    Raises
    ------
    ValueError
        If the file does not exist or cannot be parsed, or the parameters break PyRadiomics's schema
        (unknown setting, image type, feature class or feature; a value of the wrong type or out of
        range) or the way p53radiomics reads masks (``label`` other than 1). Every problem found is
        listed.
    TypeError
        If `params` is neither a dict, a path nor ``None``.

    Examples
    --------
    >>> from p53radiomics.radiomics import load_params
    >>> params = load_params()
    >>> sorted(params["imageType"])
    ['LoG', 'Original', 'Wavelet']
    >>> params["setting"]["binCount"]
    32
    >>> load_params({"setting": {"binWidht": 25}})
    Traceback (most recent call last):
    ...
    ValueError: invalid PyRadiomics parameters (dict): Key 'binWidht' was not defined. Path: '/setting'
    """
    if params is None:
        params = DEFAULT_PARAMS_FILE
    if isinstance(params, str | os.PathLike):
        path = Path(params)
        if not path.is_file():
            raise ValueError(f"PyRadiomics parameter file not found: {str(path)!r}")
        data, source = _read_yaml(path), f"file {str(path)!r}"
    elif isinstance(params, dict):
        data, source = params, "dict"
    else:
        raise TypeError(
            f"params must be a PyRadiomics parameter dict, the path of a parameter file, or None; got {type(params).__name__}"
        )
    if not isinstance(data, dict):
        raise ValueError(
            f"invalid PyRadiomics parameters ({source}): expected a mapping with keys {list(_TOP_LEVEL_KEYS)}, "
            f"got {type(data).__name__}"
        )
    try:
        data_json = json.dumps(data, default=_json_default)
    except TypeError as exc:
        raise ValueError(f"invalid PyRadiomics parameters ({source}): {exc}") from exc
    return copy.deepcopy(_validated(data_json, source)[1])


def split_label(params=None):
    """PyRadiomics's ``setting: label`` taken out of `params` where it is not 1: ``(params, label)``.

    :class:`RadiomicsExtractor` picks a label of a multi-label mask itself (``label=``) and gives
    PyRadiomics the binary mask it makes, so a ``label`` other than 1 in the parameters (what
    PyRadiomics's own users write) is read as ``label=``. Returns `params` itself and ``None``
    where the setting is absent or 1 (PyRadiomics's default, which the study's set spells out);
    else a copy without it and the label. `params` as for :func:`load_params`, not validated here
    beyond the label (a positive integer, else a ValueError).

    Examples
    --------
    >>> from p53radiomics.radiomics._params import split_label
    >>> split_label({"setting": {"label": 2, "binCount": 16}})
    ({'setting': {'binCount': 16}}, 2)
    >>> split_label(None)
    (None, None)
    """
    data = params
    if params is None or isinstance(params, str | os.PathLike):
        path = Path(DEFAULT_PARAMS_FILE if params is None else params)
        data = _read_yaml(path) if path.is_file() else None  # load_params says what is wrong
    settings = data.get("setting") if isinstance(data, dict) else None
    label = settings.get("label", 1) if isinstance(settings, dict) else 1
    if isinstance(label, int) and not isinstance(label, bool) and label == 1:
        return params, None
    if isinstance(label, bool) or not isinstance(label, int) or label < 1:
        raise ValueError(
            f"invalid PyRadiomics parameters: setting label must be a positive integer, got {label!r}"
        )
    data = copy.deepcopy(data)
    del data["setting"]["label"]
    return data, label


def resolve_label(params, label, phases):
    """``(params without a label, {phase: label} or None)``: `label` and the params' label agreed.

    `label` as :func:`~p53radiomics.io.load_case` takes it (checked); the label PyRadiomics's
    ``setting`` holds, where it is not 1 (:func:`split_label`), serves where `label` is None, and
    a `label` that differs from it is a ValueError.
    """
    params, params_label = split_label(params)
    labels = check_label(label, phases)
    if params_label is not None and labels is None:
        labels = dict.fromkeys(phases, params_label)
    elif params_label is not None and set(labels.values()) != {params_label}:
        raise ValueError(
            f"label={label!r} and the parameters' setting label {params_label} disagree: "
            "give one (or the same)"
        )
    return params, labels


def params_key(params):
    """A canonical JSON string of validated parameters (equal for equal parameter sets)."""
    return _canonical_json(params)


# --------------------------------------------------------------------------------------------------
# Feature names
# --------------------------------------------------------------------------------------------------
@functools.cache
def _deprecated_feature_is_computed(class_name, feature):
    """Whether PyRadiomics returns a value for a deprecated feature enabled by name.

    Some deprecated features still compute a value (first-order ``StandardDeviation``), others raise
    ``DeprecationWarning`` and are left out of the result (GLCM ``SumVariance``): asked of the
    feature class itself on a tiny phantom.
    """
    import SimpleITK as sitk
    from radiomics import getFeatureClasses

    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 8, (6, 6, 6)).astype(np.float64))
    mask_arr = np.zeros((6, 6, 6), dtype=np.uint32)
    mask_arr[1:5, 1:5, 1:5] = 1
    mask = sitk.GetImageFromArray(mask_arr)
    with _silenced("radiomics"):
        try:
            instance = getFeatureClasses()[class_name](
                image, mask, binCount=4, force2D=class_name == "shape2D"
            )
            instance.enableFeatureByName(feature)
            return feature in instance.execute()
        except Exception:
            return False


def _class_feature_names(class_name, names):
    from radiomics import getFeatureClasses

    known = getFeatureClasses()[
        class_name
    ].getFeatureNames()  # {name: deprecated}, PyRadiomics's order
    if not names:
        return [name for name, deprecated in known.items() if not deprecated]
    return [
        name
        for name in dict.fromkeys(names)
        if not known[name] or _deprecated_feature_is_computed(class_name, name)
    ]


@functools.lru_cache(maxsize=8)
def _wavelet_details(n_axes):
    """Names of the detail decompositions of one level, in pywt's order (e.g. 'LLH' ... 'HHH')."""
    import pywt

    decomposition = pywt.swtn(np.zeros((2,) * n_axes), "haar", level=1, start_level=0)[0]
    return tuple(
        key.replace("a", "L").replace("d", "H") for key in decomposition if key != "a" * n_axes
    )


def _image_names(image_type, kwargs):
    """Names PyRadiomics gives the images that `image_type` yields (``getXImage`` in imageoperations)."""
    if image_type in _SINGLE_IMAGE_TYPES:
        return [_SINGLE_IMAGE_TYPES[image_type]]
    if image_type == "LoG":
        return [
            f"log-sigma-{str(s).replace('.', '-')}-mm-3D" for s in kwargs.get("sigma", []) if s > 0
        ]
    if image_type == "Wavelet":
        n_axes = 2 if kwargs.get("force2D", False) else 3
        level = kwargs.get("level", 1)
        names = []
        for idx in range(1, level + 1):
            prefix = "wavelet" if idx == 1 else f"wavelet{idx}"
            names += [f"{prefix}-{name}" for name in _wavelet_details(n_axes)]
        prefix = "wavelet" if level == 1 else f"wavelet{level}"
        return names + [f"{prefix}-{'L' * n_axes}"]
    if image_type == "LBP2D":
        return ["lbp-2D"]
    if image_type == "LBP3D":
        return [f"lbp-3D-m{i + 1}" for i in range(kwargs.get("lbp3DLevels", 2))] + ["lbp-3D-k"]
    raise ValueError(
        f"p53radiomics does not know the names of the images PyRadiomics's {image_type!r} yields"
    )


def feature_names(params=None):
    """Names of the features PyRadiomics extracts with `params`, in its order, without extracting.

    Parameters
    ----------
    params : dict, str, os.PathLike or None, default=None
        As for :func:`load_params`.

    Returns
    -------
    names : list of str
        PyRadiomics's names, ``f"{image}_{class}_{feature}"`` (e.g. ``"original_firstorder_Mean"``,
        ``"wavelet-LLH_glcm_Idmn"``, ``"log-sigma-2-0-mm-3D_ngtdm_Busyness"``), diagnostics left out.

    Notes
    -----
    The names follow from the enabled image types, their settings (LoG ``sigma``, wavelet ``level``,
    ``force2D``...) and the enabled feature classes: PyRadiomics computes shape once, on the original
    image, and every other class on every image. A case may still yield fewer features than named
    here, when PyRadiomics declines a filter for it (a LoG sigma larger than the cropped image): the
    extractor then reports the case instead of filling in NaN.

    Examples
    --------
    >>> from p53radiomics.radiomics import feature_names
    >>> names = feature_names()
    >>> len(names)
    1223
    >>> names[0], names[-1]
    ('original_shape_Elongation', 'log-sigma-5-0-mm-3D_ngtdm_Strength')
    >>> feature_names({"featureClass": {"firstorder": ["Mean", "Median"]}})
    ['original_firstorder_Mean', 'original_firstorder_Median']
    """
    return list(_feature_names(params_key(load_params(params))))


@functools.lru_cache(maxsize=32)
def _feature_names(key):
    params = json.loads(key)
    settings = params["setting"]
    classes = params["featureClass"]
    names = []
    force2d = settings.get("force2D", False)
    for shape_class in ("shape", "shape2D"):
        if shape_class in classes and (shape_class == "shape" or force2d):
            names += [
                f"original_{shape_class}_{f}"
                for f in _class_feature_names(shape_class, classes[shape_class])
            ]
    per_class = {
        c: _class_feature_names(c, f) for c, f in classes.items() if not c.startswith("shape")
    }
    for image_type, custom in params["imageType"].items():
        kwargs = {**settings, **custom}
        for image in _image_names(image_type, kwargs):
            for class_name, features in per_class.items():
                names += [f"{image}_{class_name}_{f}" for f in features]
    return tuple(names)
