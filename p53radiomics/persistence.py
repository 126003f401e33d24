"""Model files that loading never executes: :func:`save_model`, :func:`load_model`.

A joblib pickle runs the code it holds when loaded. A model file here is a zip archive of
``model.skops`` (the scikit-learn parts; skops builds trusted types only: its defaults,
:data:`LIBRARY_TYPES`, :data:`SKLEARN_TYPES`, ``trusted=``), ``weights/cnn<i>.safetensors`` (each
fitted CNN's tensors, never a pickled module; the network is rebuilt from the featurizer's
parameters), an optional ``metadata.json`` and ``manifest.json`` (versions, the SHA-256 of every
other member, phases, input columns, feature names, training settings). The hashes catch damage,
they are no signature: a file from elsewhere is safe to open because nothing in it runs. skops has
no hook for what it cannot write (torch modules, pandas frames): a copy of the model holds
stand-ins for them (``_CNNState``, ``_FrameState``), swapped back after loading. What the image
steps recorded about the cases of their last call (``skipped_``, ``diagnostics_``...: patient ids,
image hashes) is left out of that copy unless ``keep_case_records=True``.
"""

import copy
import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import safetensors.torch
import skops
import skops.io
import torch
from sklearn.compose import make_column_selector
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ._manifest import FORMAT, FORMAT_VERSION, library_versions, make_manifest, type_name
from .deep import SkorchCNNFeaturizer
from .deep._net import featurizer_net
from .exceptions import ModelFileError, ModelVersionWarning
from .feature_selection import CorrelationFilter, LassoSelector
from .fusion import StackingFusion
from .harmonization import ComBatHarmonizer
from .preprocessing import LargestSliceCropper, N4Resampler
from .radiomics import RadiomicsExtractor
from .utils._cohort_step import CASE_RECORDS, CohortStep

__all__ = ["LIBRARY_TYPES", "SKLEARN_TYPES", "library_versions", "load_model", "read_manifest",
           "save_model"]  # fmt: skip

_MANIFEST, _SKOPS, _METADATA = "manifest.json", "model.skops", "metadata.json"
_WEIGHTS = re.compile(r"weights/cnn\d+\.safetensors")


def _pickle_hint(data):  # words for the error message on refused bytes that look pickled
    pickled = data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    return " (it looks like a Python pickle, which would run code)" if pickled else ""


class _CNNState:
    """Stand-in for a fitted :class:`SkorchCNNFeaturizer`: its ``params``, its ``fitted`` state
    but the network, the network's ``history``, the member holding its tensors (``weights``)."""

    def __init__(self, **state):
        vars(self).update(state)

    @classmethod
    def of(cls, cnn, weights):
        params = cnn.get_params(deep=False)
        fitted = {k: v for k, v in vars(cnn).items() if k not in params and k != "net_"}
        params = {k: str(v) if isinstance(v, torch.device) else v for k, v in params.items()}
        history = cnn.net_.history.to_list()
        return cls(params=params, fitted=fitted, history=history, weights=weights)

    def rebuild(self, tensors, device):
        from skorch.history import History

        cnn = SkorchCNNFeaturizer(**self.params)
        vars(cnn).update(self.fitted)
        cnn.device_ = str(device)
        net = featurizer_net(cnn, len(cnn.classes_), 0, cnn.device_)
        # Built without initial weights (no download, no file read): the file's tensors replace
        # them; the random initialisation leaves torch's global generator as it was.
        net.set_params(module__weights=None)
        with torch.random.fork_rng(devices=[]):
            net.initialize()
        net.module__weights = cnn.weights
        net.module_.load_state_dict(tensors, strict=True)
        net.history = History(self.history)
        cnn.net_ = net
        return cnn


class _FrameState:
    """Stand-in for a DataFrame or Series (skops writes neither): labels, index, numpy columns."""

    def __init__(self, **state):
        vars(self).update(state)

    @classmethod
    def of(cls, obj):
        series = isinstance(obj, pd.Series)
        frame = obj.to_frame() if series else obj
        dtypes = [frame.index.dtype, *frame.dtypes]
        for label, dtype in zip(["(index)", *frame.columns], dtypes, strict=True):
            if not isinstance(dtype, np.dtype) or isinstance(frame.index, pd.MultiIndex):
                raise TypeError(f"a model file keeps no {dtype} column (a DataFrame's {label!r})")
        return cls(
            kind="series" if series else "frame",
            name=obj.name if series else None,
            columns=list(frame.columns),
            index=frame.index.to_numpy(),
            index_name=frame.index.name,
            arrays=[frame.iloc[:, i].to_numpy() for i in range(frame.shape[1])],
            dtypes=[str(d) for d in dtypes],
        )

    def rebuild(self):
        index = pd.Index(self.index, name=self.index_name, dtype=np.dtype(self.dtypes[0]))
        arrays = zip(self.arrays, self.dtypes[1:], strict=True)
        frame = pd.DataFrame(
            {i: np.asarray(a, dtype=np.dtype(d)) for i, (a, d) in enumerate(arrays)}, index=index
        )
        frame.columns = pd.Index(self.columns, dtype=object)
        return frame.iloc[:, 0].rename(self.name) if self.kind == "series" else frame


#: This library's types that a model file may hold, trusted by name on load: every estimator
#: that can appear in a fitted pipeline, and this module's stand-ins. A new estimator joins here.
_STEPS = (N4Resampler, LargestSliceCropper, RadiomicsExtractor, SkorchCNNFeaturizer)
_MODELS = (CorrelationFilter, LassoSelector, StackingFusion, ComBatHarmonizer)
LIBRARY_TYPES = (*_STEPS, *_MODELS, _CNNState, _FrameState)

#: scikit-learn types that skops does not trust by default, trusted by name too because the
#: study's pipeline holds them and neither runs code when built: ``make_column_selector`` (how
#: the clinical branch picks its columns: a regular expression and dtype names) and ``Bunch`` (a
#: dict with attribute access: the fitted branches of a stacking model).
SKLEARN_TYPES = (make_column_selector, Bunch)


def _find(root, wanted):
    """The ``wanted`` objects in ``root``'s graph (containers, ``__dict__``), once, depth first."""
    found, seen, stack = [], set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type, np.ndarray)):
            continue
        seen.add(id(obj))
        if wanted(obj):
            found.append(obj)
        elif isinstance(obj, dict):
            stack.extend(reversed([*obj.keys(), *obj.values()]))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(obj)))
        elif hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module):
            stack.extend(reversed(list(vars(obj).values())))
    return found


def _tensors_bytes(module):
    """The module's state dict as safetensors bytes (on the CPU, contiguous, unshared)."""
    tensors = {}
    for key, value in module.state_dict().items():
        t = value.detach().cpu()
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.contiguous().clone()
        tensors[key] = t
    return safetensors.torch.save(tensors, metadata={"format": "pt"})


def save_model(model, path, *, metadata=None, keep_case_records=False):
    """Write a fitted model to a file that :func:`load_model` reads without running its code.

    A zip archive (see :mod:`p53radiomics.persistence`): the scikit-learn parts through skops,
    each CNN's tensors through safetensors, a manifest of versions, SHA-256 hashes, phases, input
    columns, feature names and training settings. ``model`` is left as it was; the file is
    written atomically (a failed save leaves no half-written file).

    Parameters
    ----------
    model : estimator
        A fitted estimator, e.g. a :func:`~p53radiomics.make_paper_pipeline` model. DataFrames
        and Series in its fitted state are kept (numpy dtypes only); each fitted
        :class:`~p53radiomics.SkorchCNNFeaturizer` as its parameters, fitted state and tensors.
    path : str or path-like
        File to write (replaced if it exists); ``.p53`` by convention.
    metadata : dict, default=None
        Anything JSON holds (e.g. a model card), stored as the hashed member ``metadata.json``;
        :func:`read_manifest` returns it under ``"metadata"``.
    keep_case_records : bool, default=False
        Whether the image steps keep what their last ``transform`` recorded about its cases
        (``skipped_``, ``diagnostics_``, ``registrations_``, ``cache_hits_``, ``cache_misses_``:
        patient ids, image hashes, per-case details of the training or last-scored cohort). By
        default they are left out, so that a file shared with another centre holds no patient's
        record; the model predicts the same either way, and a loaded step sets them again on its
        next call. The manifest says which (``"case_records_kept"``).

    Raises
    ------
    TypeError
        If ``model`` holds what the format cannot keep, or ``metadata`` is not JSON (and
        :class:`~sklearn.exceptions.NotFittedError` if ``model`` is not fitted).

    See Also
    --------
    load_model, read_manifest

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from p53radiomics import CorrelationFilter, load_model, save_model
    >>> from p53radiomics.persistence import read_manifest
    >>> X = np.random.default_rng(0).normal(size=(40, 4))
    >>> model = make_pipeline(CorrelationFilter(), LogisticRegression()).fit(X, X[:, 0] > 0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.p53")
    >>> save_model(model, path, metadata={"intended_use": "an example"})
    >>> loaded = load_model(path)
    >>> bool(np.array_equal(loaded.predict_proba(X), model.predict_proba(X)))
    True
    >>> manifest = read_manifest(path)
    >>> sorted(manifest["members"]), manifest["training_settings"]["correlationfilter__threshold"]
    (['metadata.json', 'model.skops'], 0.9)
    """
    check_is_fitted(model)
    members, memo, cnns = {}, {}, []
    if metadata is not None:  # json raises TypeError (or ValueError, on NaN) on what it cannot hold
        members[_METADATA] = json.dumps(metadata, indent=2, allow_nan=False).encode()
    _stand_ins(model, memo, members, cnns, drop=() if keep_case_records else CASE_RECORDS)
    # A copy holding the stand-ins (deepcopy takes them from its memo): the user's model is left
    # untouched, and the networks are not copied.
    stand_in = copy.deepcopy(model, memo)
    try:
        members[_SKOPS] = skops.io.dumps(stand_in, compression=zipfile.ZIP_DEFLATED)
    except Exception as err:  # skops raises errors of many types on what it cannot write
        raise TypeError(f"the model holds an object a model file cannot keep: {err}") from err
    _write_archive(path, make_manifest(model, members, cnns, keep_case_records), members)


def _stand_ins(root, memo, members, cnns, drop):
    """Fill ``memo`` (``id`` to copy) with the stand-ins of the DataFrames, Series and fitted CNNs
    in ``root``'s graph (the CNNs' tensors into ``members``, described in ``cnns``), and with a
    copy of each image step that has attributes named in ``drop``, without them."""
    frames = (pd.DataFrame, pd.Series)
    is_cnn = lambda obj: isinstance(obj, SkorchCNNFeaturizer) and "net_" in vars(obj)  # noqa: E731
    is_step = lambda obj: isinstance(obj, CohortStep) and not vars(obj).keys().isdisjoint(drop)  # noqa: E731
    for obj in _find(root, lambda obj: isinstance(obj, frames) or is_cnn(obj) or is_step(obj)):
        if isinstance(obj, frames):
            memo[id(obj)] = _FrameState.of(obj)
        elif is_cnn(obj):
            name = f"weights/cnn{len(cnns)}.safetensors"
            members[name] = _tensors_bytes(obj.net_.module_)
            memo[id(obj)] = _CNNState.of(obj, name)
            cnns.append({"member": name, "backbone": obj.backbone, "mode": obj.mode})
        else:
            light = copy.copy(obj)
            for name in drop:
                vars(light).pop(name, None)
            _stand_ins(light, memo, members, cnns, drop)  # what else the step holds
            memo[id(obj)] = copy.deepcopy(light, memo)


def _write_archive(path, manifest, members):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as archive:
            entries = {_MANIFEST: json.dumps(manifest, indent=2).encode(), **members}
            for name, data in entries.items():
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                stored = _WEIGHTS.fullmatch(name)  # floats barely compress
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _refuse(message, path, member=None):
    return ModelFileError(message, path=path, member=member)


def _read_archive(path):
    """``(manifest, {member: bytes})``: a zip archive of the format's members only, each listed
    in the manifest with its SHA-256, of this major format version."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            hint = _pickle_hint(f.read(2))
        raise _refuse(f"not a zip archive{hint}; nothing was loaded", path) from None
    with archive:
        names = archive.namelist()
        for name in [*names, _MANIFEST, _SKOPS]:
            if name not in (_MANIFEST, _SKOPS, _METADATA) and not _WEIGHTS.fullmatch(name):
                raise _refuse("no member of the format; nothing was loaded", path, name)
            if names.count(name) != 1:
                raise _refuse(f"held {names.count(name)} times by the archive", path, name)
        manifest = _parse_manifest(archive.read(_MANIFEST), path)
        for name in sorted((set(names) - {_MANIFEST}) ^ set(manifest["members"])):
            what = "missing from the archive" if name in manifest["members"] else "not listed"
            raise _refuse(f"{what} in the manifest's members", path, name)
        data = {name: archive.read(name) for name in names if name != _MANIFEST}
    for name, content in data.items():
        digest, listed = hashlib.sha256(content).hexdigest(), manifest["members"][name]
        if digest != listed.get("sha256"):
            message = f"SHA-256 {digest}, not the manifest's {listed.get('sha256')}"
            raise _refuse(f"{message}: changed since saved; nothing was loaded", path, name)
    return manifest, data


def _parse_manifest(raw, path):
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _refuse(f"not valid JSON: {err}", path, _MANIFEST) from None
    members = manifest.get("members") if isinstance(manifest, dict) else None
    valid = isinstance(members, dict) and all(isinstance(e, dict) for e in members.values())
    if not valid or manifest.get("format") != FORMAT:
        raise _refuse(f"not the manifest of a {FORMAT} file", path, _MANIFEST)
    major = str(manifest.get("format_version")).split(".")[0]
    if major != str(FORMAT_VERSION[0]):
        message = f"file format version {manifest.get('format_version')!r}: this p53radiomics"
        raise _refuse(f"{message} reads version {FORMAT_VERSION[0]}.x only", path, _MANIFEST)
    return manifest


def _check_versions(manifest, path):
    """Warn of each version of the file that is not the installed one (a later minor format
    version included: what it adds is ignored)."""
    saved = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    saved = {**saved, "file format": manifest["format_version"]}
    here = {"file format": "{}.{}".format(*FORMAT_VERSION), **library_versions()}
    differ = [f"{k} {saved.get(k)} (installed: {v})" for k, v in here.items() if saved.get(k) != v]
    if differ:
        warnings.warn(
            f"model file {str(path)!r} was saved with other versions than those installed: "
            f"{', '.join(differ)}; its predictions may differ, check them on known cases",
            ModelVersionWarning,
            stacklevel=3,
        )


def _load_skops(data, trusted, path):
    """The skops member's object, built only if every type in it is trusted."""
    allowed = [type_name(t) for t in (*LIBRARY_TYPES, *SKLEARN_TYPES)]
    allowed += [t if isinstance(t, str) else type_name(t) for t in (trusted or [])]
    try:
        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in allowed]
    except Exception as err:  # skops raises errors of many types on a malformed archive
        hint = _pickle_hint(data)
        raise _refuse(f"not a valid skops archive{hint}: {err}", path, _SKOPS) from None
    if untrusted:
        hint = "load_model(trusted=[...]) takes them, if you trust whoever made the file"
        raise _refuse(f"untrusted types {untrusted}, nothing built; {hint}", path, _SKOPS)
    try:
        return skops.io.loads(data, trusted=allowed)
    except Exception as err:
        raise _refuse(f"cannot be read: {err}", path, _SKOPS) from err


def _rebuilt(state, data, device, path):
    """What a stand-in stands for; a CNN's tensors read from its member."""
    if isinstance(state, _FrameState):
        try:
            return state.rebuild()
        except (AttributeError, TypeError, ValueError) as err:
            raise _refuse(f"holds a malformed DataFrame: {err}", path, _SKOPS) from err
    name = getattr(state, "weights", None)
    if not isinstance(name, str) or name not in data or not _WEIGHTS.fullmatch(name):
        member = name if isinstance(name, str) else _SKOPS
        raise _refuse("the model's CNN weights are not in the archive", path, member)
    try:
        tensors = safetensors.torch.load(data[name])
    except Exception as err:  # safetensors raises its own SafetensorError on a bad header
        hint = _pickle_hint(data[name])
        raise _refuse(f"not a safetensors file{hint}: {err}", path, name) from None
    try:
        return state.rebuild(tensors, device)
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as err:
        raise _refuse(f"no CNN can be rebuilt from these tensors: {err}", path, name) from err


def load_model(path, trusted=None, *, device="cpu", cache_dir=None):
    """Read a model written by :func:`save_model`, running no code from the file.

    Before anything is built, every member must be one the format defines, with the manifest's
    SHA-256, and every type in the skops member trusted; CNN weights are read as tensors.

    Parameters
    ----------
    path : str or path-like
        The model file.
    trusted : list of str or type, default=None
        Types to trust besides skops' defaults, :data:`LIBRARY_TYPES` and :data:`SKLEARN_TYPES`,
        as :func:`skops.io.loads` takes them (e.g. names that the error lists). Trust only what
        you have read, from whom you trust.
    device : str, default="cpu"
        Device the CNNs are rebuilt on (their ``device`` parameter stays as saved): a model saved
        from CUDA loads on a CPU-only machine.
    cache_dir : str, path-like or None, default=None
        Where the loaded model's image steps cache their per-case results: the ``cache_dir`` of
        every :class:`~p53radiomics.N4Resampler` and :class:`~p53radiomics.RadiomicsExtractor`
        in it, fitted or not (those a clone or a refit starts from too); ``None`` caches nothing.
        The folder saved in the file is never used: it is a path on the machine of whoever saved
        it, and the cache's feature entries are pickles, which a folder the file's author chose
        could hold. The manifest keeps it among the training settings.

    Returns
    -------
    model : estimator
        The model, predicting as the saved one did (with the same library versions).

    Raises
    ------
    p53radiomics.exceptions.ModelFileError
        Naming the member: no model archive, a member changed, unknown, missing or not what it
        should be (a pickle, say), an untrusted type, another major version of the format.

    Warns
    -----
    p53radiomics.exceptions.ModelVersionWarning
        Naming them, where the format or a library that saved the file has another version.
    """
    manifest, data = _read_archive(path)
    _check_versions(manifest, path)
    model = _load_skops(data[_SKOPS], trusted, path)
    folder = None if cache_dir is None else str(cache_dir)
    for step in _find(model, lambda obj: isinstance(obj, CohortStep) and "cache_dir" in vars(obj)):
        step.cache_dir = folder  # never the saved folder (see `cache_dir`)
    stand_ins = _find(model, lambda obj: isinstance(obj, (_CNNState, _FrameState)))
    memo = {id(s): _rebuilt(s, data, device, path) for s in stand_ins}
    return copy.deepcopy(model, memo) if memo else model


def read_manifest(path):
    """The manifest of a model file, checked as :func:`load_model` does, the model not built.

    Parameters
    ----------
    path : str or path-like
        The model file.

    Returns
    -------
    manifest : dict
        ``format``, ``format_version``, ``created``, ``model_type``, ``versions``, ``members``
        (``sha256``, ``size``), ``phases``, ``input_columns``, ``feature_names`` (by step),
        ``cnns``, ``training_settings`` (``get_params(deep=True)``, JSON-safe), ``metadata``.
    """
    manifest, data = _read_archive(path)
    try:
        manifest["metadata"] = json.loads(data[_METADATA]) if _METADATA in data else None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _refuse(f"not valid JSON: {err}", path, _METADATA) from None
    return manifest
