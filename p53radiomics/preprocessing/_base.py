"""What the stateless image steps share: parameter validation, ``fit``, tags and ``set_output``.

The private scikit-learn helpers the preprocessing steps need (``_fit_context`` and the parameter
constraint classes) are imported here and nowhere else in this sub-package.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ..exceptions import SkippedCaseWarning
from ..io import validate_cohort
from ..utils._sklearn import Interval, StrOptions, _fit_context

__all__ = ["Interval", "StrOptions"]


class _StatelessCohortTransformer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Base of a transformer that takes a cohort table and learns nothing.

    ``fit`` only checks the parameters and the table's columns and records ``feature_names_in_``;
    ``transform`` works without it (the tag ``requires_fit`` is ``False``) and checks the parameters
    itself. scikit-learn's automatic output wrapping is off (``auto_wrap_output_keys=None``): a
    subclass returns the container its output needs (a cohort table, a 4-D array) whatever
    ``set_output`` says.

    Subclasses define ``phases`` among their parameters and implement ``transform``.
    """

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

    def _record_skipped(self, X, skipped, what, stacklevel=3):
        """Set ``skipped_`` from ``{patient_id: (column, reason)}`` and warn once if not empty.

        `what` says what became of the skipped cases' output (e.g. "their crops are NaN");
        `stacklevel` is that of the warning seen from here (3: the caller of ``transform`` when
        ``transform`` calls this method itself).
        """
        self.skipped_ = pd.DataFrame(
            [{"column": c, "reason": r} for c, r in skipped.values()],
            index=pd.Index(list(skipped), name=X.index.name),
            columns=["column", "reason"],
        )
        if skipped:
            shown = "; ".join(r for _, r in list(skipped.values())[:3]) + (
                "; ..." if len(skipped) > 3 else ""
            )
            warnings.warn(
                f"{type(self).__name__} skipped {len(skipped)} of {len(X)} cases ({what}; see "
                f"skipped_): {shown}",
                SkippedCaseWarning,
                stacklevel=stacklevel,
            )

    def _start_transform(self, X):
        """Checks at the start of ``transform``, which may be called without ``fit``."""
        self._validate_params()
        self._check_table(X)
        return self._check_settings()

    def set_output(self, *, transform=None):
        """Accepted for :meth:`sklearn.pipeline.Pipeline.set_output`; the output type is fixed.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            Ignored: this step always returns the container documented in ``transform``. The method
            exists so that ``Pipeline.set_output`` can be called on a pipeline holding this step.

        Returns
        -------
        self : object
            The step itself.
        """
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
