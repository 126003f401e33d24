"""The manifest of a model file (:mod:`p53radiomics.persistence`): the format and its version,
the library versions, the members' SHA-256, the phases, input columns, feature names and training
settings of the model it holds."""

import datetime
import hashlib

import numpy as np
import safetensors
import sklearn
import skops
import torch
from sklearn.base import BaseEstimator

from ._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "library_versions", "make_manifest", "type_name"]

#: The ``format`` every manifest names.
FORMAT = "p53radiomics-model"
#: File format version ``(major, minor)``: another major is refused, another minor warns.
FORMAT_VERSION = (1, 0)


def type_name(cls):
    """``module.Class``: how a model file names a type (skops's trusted names)."""
    return f"{cls.__module__}.{cls.__name__}"


def library_versions():
    """``{library: version}`` of p53radiomics and the libraries a model depends on."""
    import radiomics
    import SimpleITK

    libraries = {"scikit-learn": sklearn, "torch": torch, "SimpleITK": SimpleITK}
    libraries.update(PyRadiomics=radiomics, numpy=np, skops=skops, safetensors=safetensors)
    return {"p53radiomics": __version__, **{k: str(m.__version__) for k, m in libraries.items()}}


def _json_safe(value):
    """``value`` where JSON holds it exactly, else text: an estimator's qualified class name,
    anything else's ``repr``."""
    if isinstance(value, BaseEstimator):
        return type_name(type(value))
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int)):
        return value
    return value if isinstance(value, float) and np.isfinite(value) else repr(value)


def _feature_names(model, path=""):
    """``{step path: names}``: for each pipeline in ``model`` (through steps and the fitted
    branches of a stacking model), the features reaching its final step, where it can say."""
    names = {}
    steps = getattr(model, "steps", None)
    steps = list(steps) if isinstance(steps, list) else []
    if len(steps) > 1:
        try:
            names[path or "."] = [str(n) for n in model[:-1].get_feature_names_out()]
        except (AttributeError, TypeError, ValueError):
            pass
    branches = getattr(model, "named_estimators_", None)
    children = steps + (list(branches.items()) if isinstance(branches, dict) else [])
    for name, child in children:
        if isinstance(child, BaseEstimator):
            names.update(_feature_names(child, f"{path}/{name}" if path else name))
    return names


def make_manifest(model, members, cnns, case_records_kept):
    params = model.get_params(deep=True) if isinstance(model, BaseEstimator) else {}
    phase_keys = sorted((k for k in params if k.split("__")[-1] == "phases"), key=len)
    phases = next((list(map(str, params[k])) for k in phase_keys if params[k] is not None), None)
    columns = getattr(model, "feature_names_in_", None)
    return {
        "format": FORMAT,
        "format_version": "{}.{}".format(*FORMAT_VERSION),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model_type": type_name(type(model)),
        "versions": library_versions(),
        "members": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
        },
        "phases": phases,  # the ``phases`` setting nearest the top of the model
        "input_columns": None if columns is None else [str(c) for c in columns],
        "feature_names": _feature_names(model),
        "cnns": cnns,
        "case_records_kept": bool(case_records_kept),
        "training_settings": {k: _json_safe(v) for k, v in params.items()},
    }
