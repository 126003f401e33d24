"""The case loop every image step runs, and what those steps share: ``fit``, tags, ``set_output``.

An image step (:class:`~p53radiomics.N4Resampler`, :class:`~p53radiomics.RadiomicsExtractor`,
:class:`~p53radiomics.LargestSliceCropper`) takes a cohort table and learns nothing; its ``transform``
runs one computation per case (a patient, or a (patient, phase) pair). :class:`CohortStep` owns the
loop around that computation, in the spirit of imbalanced-learn's public ``fit_resample`` calling
the private ``_fit_resample``: the step's ``transform`` lists its cases and calls
:meth:`CohortStep._run_cases`, which

1. fingerprints each case's cells and looks it up in the step's :class:`~p53radiomics.cache.CaseCache`
   (when the step has one);
2. runs the cases not found through :func:`~p53radiomics.utils._parallel.parallel_map` (``n_jobs``);
3. applies ``on_error`` to each failure (:class:`~p53radiomics.exceptions.CohortError`): raise it,
   or keep it as the case's result;
4. sets ``cache_hits_`` and ``cache_misses_`` and logs them (a step with a cache);

and the step assembles its output from the results, reporting its skipped cases through
:meth:`CohortStep._record_skipped` (``skipped_`` and one :class:`SkippedCaseWarning`).

A step supplies the per-case parts: ``_open_cache`` and ``_case_key`` (its cache and key),
``_cached_result`` (an entry read back), ``_case_worker`` and ``_case_args`` (the per-case function
and its arguments) and
``_case_result`` (a worker's outcome checked, and cached where the parent writes the cache).
"""

import logging
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from ..cache import fingerprint
from ..exceptions import CohortError, SkippedCaseWarning
from ..io import read_image, validate_cohort
from ._parallel import parallel_map
from ._sklearn import StrOptions, _fit_context

__all__ = ["CASE_RECORDS", "CohortStep"]

#: What an image step's ``transform`` records about the cases of its last call, patient by patient
#: or counted: not what it learnt. :func:`~p53radiomics.save_model` leaves them out of a model file
#: unless told to keep them (they hold patient ids); a loaded step sets them again on its next call.
CASE_RECORDS = ("skipped_", "cache_hits_", "cache_misses_", "diagnostics_", "registrations_")


class CohortStep(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None, metaclass=ABCMeta):
    """Base of an image step: a transformer that takes a cohort table and learns nothing.

    ``fit`` only checks the parameters and the table's columns and records ``feature_names_in_``;
    ``transform`` works without it (the tag ``requires_fit`` is ``False``) and checks the parameters
    itself (:meth:`_start_transform`). A subclass defines ``phases``, ``n_jobs``, ``on_error`` and
    ``verbose`` among its parameters (their constraints are :attr:`_parameter_constraints`) and
    implements ``transform`` with :meth:`_run_cases`.

    Output container: where ``_fixed_output`` is true (the default) the step returns the container
    its output needs (a cohort table of images, a 4-D array) whatever ``set_output`` says; a step
    whose output is a plain feature table sets it to false and gets scikit-learn's ``set_output``.
    """

    #: Constraints of the parameters every image step has; a subclass adds its own.
    _parameter_constraints = {
        "n_jobs": [Integral, None],
        "on_error": [StrOptions({"raise", "skip"})],
        "verbose": ["verbose"],
    }

    _fixed_output = True
    #: Progress bar label and unit of :meth:`_run_cases`.
    _progress = ("cases", "case")
    #: What a step with a cache does to a case not found in it ("compute"), in its debug record;
    #: None for a step without a cache (no record, no ``cache_hits_`` or ``cache_misses_``).
    _verb = None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the parameters and the cohort table; nothing is learnt.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (see :mod:`p53radiomics.io`). Only its columns are checked here: the images
            are read by ``transform``.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The step itself.
        """
        self._check_settings()
        self._check_table(X)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(X.columns)
        return self

    def _check_settings(self):
        """Checks of the parameters beyond ``_parameter_constraints`` (lengths, ranges); may return them."""

    def _check_table(self, X):
        """Raise on an unknown phase, a missing mask column or repeated patient ids."""
        validate_cohort(X, self.phases, check_images=False)

    def _start_transform(self, X):
        """Checks at the start of ``transform``, which may be called without ``fit``."""
        self._validate_params()
        self._check_table(X)
        return self._check_settings()

    # ----------------------------------------------------------------------------------------------
    # The case loop
    # ----------------------------------------------------------------------------------------------
    def _run_cases(self, X, cases, context=None):
        """Look up, run and check every case; return ``{case: result or CohortError}``.

        `cases` are hashable (a patient id, a (patient, phase) pair...) in the table's order;
        `context` is passed to the hooks (what ``transform`` worked out once for all cases). Under
        ``on_error="raise"`` the first failure raises, and the cases still queued are not run.
        """
        cache = self._open_cache()
        results, todo, memo = {}, [], {}
        for case in cases:
            try:
                key = None if cache is None else self._case_key(X, case, cache, context, memo)
            except CohortError as error:
                results[case] = self._failed(error)
                continue
            found = None if key is None else self._cached_result(cache, key)
            if found is None:
                todo.append((case, key))
            else:
                results[case] = found
        if self._verb is not None:
            self._count_cache_use(cache, results, len(todo), len(cases))
        if todo:
            self._run_todo(X, todo, cache, context, results)
        if self._verb is not None:
            self.cache_misses_ = len(todo)
        return results

    def _count_cache_use(self, cache, results, n_todo, n_cases):
        """Set ``cache_hits_``; log the counts (DEBUG always, INFO as :meth:`_log_cache_use` says)."""
        hits = len(results) - sum(isinstance(r, CohortError) for r in results.values())
        self.cache_hits_ = hits
        log = logging.getLogger(type(self).__module__)
        # one record per call, whatever the verbosity: what a grid search recomputed can be counted
        log.debug(
            "%s: %d (case, phase) pairs to %s, %d read from the cache",
            type(self).__name__,
            n_todo,
            self._verb,
            hits,
        )
        self._log_cache_use(log, cache, hits, n_cases)

    def _run_todo(self, X, todo, cache, context, results):
        """Run the ``(case, key)`` pairs of `todo` in parallel, in order, into `results`."""
        outcomes = parallel_map(
            self._case_worker(),
            [self._case_args(X, case, key, cache, context) for case, key in todo],
            n_jobs=self.n_jobs,
        )
        desc, unit = self._progress
        progress = tqdm(total=len(todo), desc=desc, unit=unit, disable=not self.verbose)
        try:
            for (case, key), outcome in zip(todo, outcomes, strict=True):
                progress.update()
                try:
                    results[case] = self._case_result(case, key, outcome, cache, context)
                except CohortError as error:
                    results[case] = self._failed(error)
        finally:
            progress.close()
            if hasattr(outcomes, "close"):
                outcomes.close()  # after an error: the cases still queued are not run

    def _failed(self, error):
        """`error` raised under ``on_error="raise"``, returned (as the case's result) otherwise."""
        if self.on_error == "raise":
            raise error
        return error

    def _log_cache_use(self, log, cache, hits, n_cases):
        """The INFO record of the cache's use: with a cache, at ``verbose >= 1``."""
        if cache is not None and self.verbose:
            log.info(
                "%s: %d of %d (case, phase) pairs read from the cache",
                type(self).__name__,
                hits,
                n_cases,
            )

    @staticmethod
    def _cell_fingerprint(cell, patient_id, column, memo):
        """:func:`~p53radiomics.cache.fingerprint` of one cell, once per cell (`memo`).

        Raises the :class:`CohortError` that says what is wrong with a cell that cannot be hashed
        (empty, a missing file...), naming its patient and column.
        """
        memo_key = cell if isinstance(cell, str) else id(cell)  # X holds the cells: ids stay unique
        if memo_key not in memo:
            try:
                memo[memo_key] = fingerprint(cell)
            except (OSError, TypeError) as exc:
                # read_image raises the error that says what is wrong with the cell
                read_image(cell, patient_id=patient_id, column=column)
                raise CohortError(
                    f"cannot read {cell!r}: {exc}", patient_id=patient_id, column=column
                ) from exc
        return memo[memo_key]

    # Hooks of a step with a cache or a worker of its own (the defaults: no cache).
    def _open_cache(self):
        """The step's :class:`~p53radiomics.cache.CaseCache`, or None (the default: none)."""
        return None

    def _case_key(self, X, case, cache, context, memo):
        """The cache key of `case` (None: not looked up); may raise CohortError."""
        raise NotImplementedError

    def _cached_result(self, cache, key):
        """The result of a case read back from `cache`, or None if it is not there."""
        raise NotImplementedError

    @abstractmethod
    def _case_worker(self):
        """The worker run on each case: a module-level function (picklable), looked up when called.

        Abstract, with :meth:`_case_args`: every step defines both, and the base itself is no
        estimator (``utils.discovery.all_estimators`` skips it).
        """

    @abstractmethod
    def _case_args(self, X, case, key, cache, context):
        """The arguments of the worker for `case` (a tuple): its cells, not the whole table."""

    def _case_result(self, case, key, outcome, cache, context):
        """The result of `case` from its worker's `outcome`; raise CohortError if it failed."""
        if isinstance(outcome, CohortError):
            raise outcome
        return outcome

    # ----------------------------------------------------------------------------------------------
    # Skipped cases
    # ----------------------------------------------------------------------------------------------
    def _record_skipped(self, skipped, message, stacklevel=3):
        """Set ``skipped_`` to the table `skipped`; warn `message` once if it has rows.

        `stacklevel` is that of the warning seen from here (3: the caller of ``transform`` when
        ``transform`` calls this method itself).
        """
        self.skipped_ = skipped
        if len(skipped):
            warnings.warn(message, SkippedCaseWarning, stacklevel=stacklevel)

    def _skipped_patients(self, X, outcomes, what):
        """``skipped_`` and its warning for skipping whole patients.

        `outcomes` are ``(patient_id, result)`` pairs in the table's order; a patient's first
        failure (:class:`CohortError`) is reported. `what` says what became of the skipped cases'
        output (e.g. "their crops are NaN"). Returns the arguments of :meth:`_record_skipped`: a
        table indexed by patient id (``X``'s index name), columns ``column`` (the cell at fault)
        and ``reason``, and the message.
        """
        skipped = {}
        for patient_id, result in outcomes:
            if isinstance(result, CohortError) and patient_id not in skipped:
                skipped[patient_id] = (result.column, str(result))
        table = pd.DataFrame(
            [{"column": c, "reason": r} for c, r in skipped.values()],
            index=pd.Index(list(skipped), name=X.index.name),
            columns=["column", "reason"],
        )
        shown = "; ".join(r for _, r in list(skipped.values())[:3]) + (
            "; ..." if len(skipped) > 3 else ""
        )
        message = (
            f"{type(self).__name__} skipped {len(skipped)} of {len(X)} cases ({what}; see "
            f"skipped_): {shown}"
        )
        return table, message

    # ----------------------------------------------------------------------------------------------
    def set_output(self, *, transform=None):
        """Accepted for :meth:`sklearn.pipeline.Pipeline.set_output`; the output type may be fixed.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            For a step whose output is a cohort table of images or an array of crops, ignored: the
            step always returns the container documented in ``transform``, and the method exists
            so that ``Pipeline.set_output`` can be called on a pipeline holding it. For a step
            whose output is a feature table (:class:`~p53radiomics.RadiomicsExtractor`), as
            scikit-learn's :meth:`~sklearn.base.TransformerMixin.set_output`.

        Returns
        -------
        self : object
            The step itself.
        """
        if not self._fixed_output:
            return super().set_output(transform=transform)
        if transform not in (None, "default", "pandas", "polars"):
            raise ValueError(
                f"transform must be 'default', 'pandas', 'polars' or None, got {transform!r}"
            )
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags
