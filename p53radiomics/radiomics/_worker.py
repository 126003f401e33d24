"""One (patient, phase) extraction: what a joblib worker of :class:`RadiomicsExtractor` runs; and
how the extractor checks and assembles what its workers return (results, diagnostics, skipped
cases, passthrough columns).

A worker may be a process, a thread or a dask worker: PyRadiomics's logger and SimpleITK's number of
threads are global to a process, so they are changed through
:class:`~p53radiomics.utils._parallel.SharedSetting`, never saved and restored by each extraction.
"""

import copy
import logging
import threading
from contextlib import contextmanager

import numpy as np
import pandas as pd

from ..exceptions import CohortError
from ..io import load_case
from ..utils._parallel import SharedSetting
from ..utils._sitk import one_sitk_thread
from ._params import params_key

__all__ = [
    "check_passthrough",
    "check_result",
    "diagnostics_frame",
    "extract_phase",
    "skipped_extractions",
]


class _Collector(logging.Handler):
    """Keeps PyRadiomics's warnings and errors of one extraction, to explain a failure with them.

    Only the records of the thread that made it: other extractions may run in other threads of
    the process (a dask worker's threads, joblib's threading backend).
    """

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []
        self.thread = threading.get_ident()

    def emit(self, record):
        if record.thread is not None and record.thread != self.thread:
            return
        lines = [ln.strip() for ln in record.getMessage().strip().splitlines() if ln.strip()]
        if lines:  # a logged traceback is summed up by its last line, the exception
            self.messages.append(lines[-1])


def _block(record):
    return False


def _set_radiomics_logging(verbose):
    """Quiet PyRadiomics's logger for `verbose` (see :func:`_radiomics_logging`); return the undo."""
    rlogger = logging.getLogger("radiomics")
    saved_level, saved_propagate = rlogger.level, rlogger.propagate
    muted = [h for h in rlogger.handlers] if verbose < 2 else []
    rlogger.setLevel(logging.INFO if verbose >= 3 else logging.WARNING)
    for handler in muted:
        handler.addFilter(_block)
    if verbose < 2:
        rlogger.propagate = False

    def restore():
        for handler in muted:
            handler.removeFilter(_block)
        rlogger.setLevel(saved_level)
        rlogger.propagate = saved_propagate

    return restore


# The logger is global to the process, and several extractions may run at once in its threads.
_RADIOMICS_LOGGING = SharedSetting(_set_radiomics_logging)


@contextmanager
def _radiomics_logging(verbose):
    """PyRadiomics's logging during one extraction: quiet below ``verbose=2``, collected always.

    PyRadiomics attaches a stderr handler to its ``radiomics`` logger when it is imported. Below
    ``verbose=2`` that handler is muted and the records do not propagate to the root logger; at 2
    its warnings show, at 3 its progress messages (INFO) too. Everything is restored afterwards,
    when the last of the extractions running in the process's threads ends (they share the
    settings of the first one).
    """
    import radiomics  # noqa: F401  (its import attaches the stderr handler muted below: import it first)

    rlogger = logging.getLogger("radiomics")
    collector = _Collector()
    with _RADIOMICS_LOGGING.hold(verbose):
        rlogger.addHandler(collector)
        try:
            yield collector.messages
        finally:
            rlogger.removeHandler(collector)


_EXTRACTORS = {}


def _pyradiomics_extractor(params):
    """A PyRadiomics extractor for validated `params`, built once per process and reused."""
    key = params_key(params)
    extractor = _EXTRACTORS.get(key)
    if extractor is None:
        from radiomics import featureextractor

        # Built with PyRadiomics's defaults, then given the parameters exactly as its _applyParams
        # would: they are validated already, and this keeps PyRadiomics from attaching its stderr
        # handler to pykwalify's logger (it does when it validates and no handler exists).
        extractor = featureextractor.RadiomicsFeatureExtractor()
        extractor.enabledImagetypes = copy.deepcopy(params["imageType"])
        extractor.enabledFeatures = copy.deepcopy(params["featureClass"])
        extractor.settings.update(copy.deepcopy(params["setting"]))
        extractor.settings.update(copy.deepcopy(params.get("voxelSetting", {})))
        if len(_EXTRACTORS) >= 8:
            _EXTRACTORS.clear()
        _EXTRACTORS[key] = extractor
    return extractor


def extract_phase(case, patient_id, phase, params, verbose):
    """Read one phase of one patient through :mod:`p53radiomics.io` and run PyRadiomics on it.

    The geometry of image and mask is checked by :func:`~p53radiomics.io.load_case`, with the
    tolerance of every step (:data:`~p53radiomics.io.GEOMETRY_TOLERANCE`); a mask that passes
    comes with its image's geometry exactly, so PyRadiomics's own check (SimpleITK's, at its
    default tolerance) cannot refuse it and no global SimpleITK tolerance is changed.

    Returns ``("ok", features, diagnostics, messages)`` or ``("error", CohortError)``: errors are
    returned, not raised, so that ``on_error="skip"`` lets the other cases go on.
    """
    image_col = phase
    try:
        with one_sitk_thread():
            image, mask = load_case(case, patient_id, phases=(phase,))[phase]
            with _radiomics_logging(verbose) as messages:
                result = _pyradiomics_extractor(params).execute(image, mask)
    except CohortError as exc:
        return ("error", exc)
    except Exception as exc:  # PyRadiomics raises ValueError (ROI too small...) and others
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (
            "error",
            CohortError(
                f"PyRadiomics failed on phase {phase!r}: {type(exc).__name__}: {reason}",
                patient_id=patient_id,
                column=image_col,
            ),
        )
    features, diagnostics = {}, {}
    for name, value in result.items():
        if name.startswith("diagnostics_"):
            diagnostics[name] = value
        else:
            try:
                features[name] = float(value)
            except (TypeError, ValueError):
                features[name] = float("nan")
    return ("ok", features, diagnostics, list(dict.fromkeys(messages)))


def check_result(features, names, messages, patient_id, phase):
    """Raise CohortError unless `features` holds a finite value for every name and nothing else."""
    said = f"; PyRadiomics said: {' | '.join(messages[:3])}" if messages else ""
    missing = [n for n in names if n not in features]
    if missing:
        raise CohortError(
            f"PyRadiomics returned no value for {len(missing)} of {len(names)} features of phase {phase!r} "
            f"(e.g. {missing[:3]}){said}",
            patient_id=patient_id,
            column=phase,
        )
    known = set(names)
    extra = [n for n in features if n not in known]
    if extra:
        raise CohortError(
            f"PyRadiomics returned {len(extra)} features that the parameters do not name (e.g. {extra[:3]}); "
            "please report this with your parameters",
            patient_id=patient_id,
            column=phase,
        )
    bad = [n for n in names if not np.isfinite(features[n])]
    if bad:
        raise CohortError(
            f"PyRadiomics could not compute {len(bad)} features of phase {phase!r} (NaN or infinite: "
            f"{bad[:3]}){said}",
            patient_id=patient_id,
            column=phase,
        )


def diagnostics_frame(diagnostics, index, phases):
    """One row per patient, columns ``f"{phase}_{name}"`` phase by phase, object dtype."""
    columns = {}
    for j, name in sorted(
        diagnostics, key=lambda key: key[0]
    ):  # stable: PyRadiomics's order within a phase
        cells = [None] * len(index)
        for row, value in diagnostics[(j, name)].items():
            cells[row] = value
        columns[f"{phases[j]}_{name}"] = pd.Series(cells, index=index.copy(), dtype=object)
    return pd.DataFrame(columns, index=index.copy(), dtype=object)


def skipped_extractions(X, skipped, n_cases):
    """``skipped_`` and its warning from ``(row, phase, column, reason)`` tuples in table order."""
    table = pd.DataFrame(
        [s[1:] for s in skipped],
        index=X.index[[s[0] for s in skipped]].rename("patient_id"),
        columns=["phase", "column", "reason"],
    )
    shown = "; ".join(
        f"patient {X.index[r]!r}, phase {ph!r}: {why}" for r, ph, _, why in skipped[:5]
    )
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    message = (
        f"RadiomicsExtractor skipped {len(skipped)} of {n_cases} (patient, phase) "
        f"extractions, whose features are NaN (see skipped_): {shown}{more}"
    )
    return table, message


def check_passthrough(names, X, feature_names_out=None):
    """The `passthrough` names as a list; raise if one is missing from `X` or is a feature name."""
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"passthrough must be a list or tuple of column names, got {names!r} "
            "(for one column: passthrough=(name,))"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"passthrough names a column twice: {names!r}")
    features = set(feature_names_out if feature_names_out is not None else ())
    for name in names:
        if X is not None and name not in X.columns:
            raise CohortError("passthrough column is missing from the cohort table", column=name)
        if name in features:
            raise ValueError(f"passthrough column {name!r} has the name of a feature")
    return list(names)
