"""StackingFusion: the study's combined model, a logistic regression over the branches' scores."""

import warnings

import numpy as np
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..exceptions import InvertedBranchWarning


def _final_has(method):
    """Whether the (fitted, else unfitted) final estimator has `method`: gates the methods below."""

    def check(self):
        final = (
            getattr(self, "final_estimator_", None) or self.final_estimator or LogisticRegression()
        )
        return hasattr(final, method)

    return check


__all__ = ["StackingFusion", "negative_branch_weights"]


class StackingFusion(StackingClassifier):
    """Fuse several models of the same cohort table by stacking their out-of-fold probabilities.

    Each branch is an estimator (usually a :class:`~sklearn.pipeline.Pipeline`) that takes the whole
    cohort table, picks what it needs (clinical columns, images) and predicts a probability. The
    final estimator, a logistic regression by default as in the study, is fitted on the branches'
    *out-of-fold* probabilities (:func:`~sklearn.model_selection.cross_val_predict` with `cv`), so it
    never sees a branch's prediction on a patient the branch was trained on; the branches are then
    refitted on all the data for prediction.

    This is scikit-learn's :class:`~sklearn.ensemble.StackingClassifier` (same machinery, same
    fitted attributes), with branch-named outputs and defaults for the study.

    Parameters
    ----------
    estimators : list of (str, estimator)
        The branches, e.g. ``[("clinical", ...), ("radiomics", ...), ("deep", ...)]``. A branch set
        to ``"drop"`` is left out.
    final_estimator : estimator, default=None
        Fitted on the branches' scores; ``None`` means
        :class:`~sklearn.linear_model.LogisticRegression`.
    cv : int, cross-validation generator or iterable, default=5
        Splits for the out-of-fold scores (an int gives stratified folds). ``"prefit"`` uses
        already-fitted branches as they are.
    n_jobs : int, default=None
        Branches fitted in parallel (joblib).
    stack_method : {"auto", "predict_proba", "decision_function", "predict"}, default="predict_proba"
        Which output of each branch is stacked. For a binary label the probability of the positive
        class is kept: one score per branch.
    verbose : int, default=0
        Verbosity of the cross-validation.

    Attributes
    ----------
    estimators_ : list of estimators
        The branches, fitted on all the data.
    named_estimators_ : Bunch
        The fitted branches by name.
    final_estimator_ : estimator
        The fitted final estimator.
    stack_method_ : list of str
        The method used for each branch.
    classes_ : ndarray
        The class labels.

    See Also
    --------
    make_paper_pipeline : the study's combined model, built on this class.
    sklearn.ensemble.StackingClassifier : the machinery underneath.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from p53radiomics.fusion import StackingFusion
    >>> X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    >>> X = pd.DataFrame(X, columns=["ltd", "rim_aphe", "afp", "age"])
    >>> def branch(*columns):
    ...     return make_pipeline(make_column_transformer(("passthrough", list(columns))), LogisticRegression())
    >>> fusion = StackingFusion([("size", branch("ltd")), ("labs", branch("afp", "age"))], cv=3)
    >>> fusion.set_output(transform="pandas").fit(X, y).transform(X).columns.tolist()
    ['size', 'labs']
    >>> fusion.predict_proba(X).shape
    (60, 2)
    """

    def __init__(
        self,
        estimators,
        final_estimator=None,
        *,
        cv=5,
        n_jobs=None,
        stack_method="predict_proba",
        verbose=0,
    ):
        super().__init__(
            estimators=estimators,
            final_estimator=final_estimator,
            cv=cv,
            stack_method=stack_method,
            n_jobs=n_jobs,
            passthrough=False,  # a cohort table cannot be passed through to a regression
            verbose=verbose,
        )

    def fit(self, X, y, **fit_params):
        """Fit the branches on out-of-fold splits, the final estimator on their scores, then refit
        the branches on all of `X`.

        Warns :class:`~p53radiomics.exceptions.InvertedBranchWarning` where the final estimator
        (a linear model over one score per branch) gives a branch a negative coefficient.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (whatever the branches take).
        y : array-like of shape (n_patients,)
            Labels.
        **fit_params : dict
            Passed to the branches and the final estimator, as
            :meth:`sklearn.ensemble.StackingClassifier.fit` does.

        Returns
        -------
        self : StackingFusion
        """
        super().fit(X, y, **fit_params)
        negative = negative_branch_weights(self)
        if negative:
            listed = ", ".join(f"{name!r} ({value:.3g})" for name, value in negative.items())
            warnings.warn(
                f"{type(self.final_estimator_).__name__} weighs the scores of the branches "
                f"{listed} negatively: a higher probability from them lowers the fused one. "
                "Either their out-of-fold scores ranked the training patients against the label "
                "(an overfit or uninformative branch, common in small cohorts: refitted on all the "
                "training patients, an overfit branch then ranks them in reverse in the fused "
                "model) or they overlap another branch. Check each branch's cross-validated AUC, "
                "and drop one without signal (fusion__<branch>='drop' in the study's pipeline).",
                InvertedBranchWarning,
                stacklevel=2,
            )
        return self

    def get_feature_names_out(self, input_features=None):
        """Names of the stacked scores: the branch names (``"clinical"``, ...).

        For a multiclass label each branch gives one score per class, named ``"{branch}_{class}"``.

        Parameters
        ----------
        input_features : None
            Ignored (the output does not depend on the input's columns).

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "estimators_")
        names = [name for name, est in self.estimators if est != "drop"]
        if len(self.classes_) == 2 and all(m == "predict_proba" for m in self.stack_method_):
            return np.asarray(names, dtype=object)
        prefix = f"{type(self).__name__.lower()}_"
        return np.asarray(
            [n.removeprefix(prefix) for n in super().get_feature_names_out(input_features)],
            dtype=object,
        )

    # scikit-learn's StackingClassifier feeds its final estimator `self.transform(X)`, which
    # `set_output(transform="pandas")` turns into a DataFrame at prediction time only (the final
    # estimator was fitted on an array): a warning about feature names, and a trap if the frame's
    # columns were ever reordered. The scores go to the final estimator as an array, always.
    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        """Fused probability of each class for the cohort table `X`.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (whatever the branches take).

        Returns
        -------
        proba : ndarray of shape (n_patients, n_classes)
        """
        check_is_fitted(self)
        return self.final_estimator_.predict_proba(self._transform(X))

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the final estimator on the branches' scores.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table.

        Returns
        -------
        decision : ndarray of shape (n_patients,) or (n_patients, n_classes)
        """
        check_is_fitted(self)
        return self.final_estimator_.decision_function(self._transform(X))

    @available_if(_final_has("predict"))
    def predict(self, X, **predict_params):
        """Predicted class for each patient.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table.
        **predict_params : dict
            Passed to the final estimator's ``predict``.

        Returns
        -------
        y_pred : ndarray of shape (n_patients,)
        """
        check_is_fitted(self)
        return self._label_encoder.inverse_transform(
            self.final_estimator_.predict(self._transform(X), **predict_params)
        )


def negative_branch_weights(fusion):
    """The branches a fitted fusion's final estimator weighs negatively: ``{name: coefficient}``.

    Read from the final estimator's ``coef_`` where it holds one coefficient per branch (a linear
    model over the positive class's probability of each branch, the default); empty otherwise.

    Parameters
    ----------
    fusion : StackingFusion
        Fitted.

    Returns
    -------
    negative : dict of str to float
        In the branches' order.

    Examples
    --------
    Thirty patients, and a branch that memorises a column of noise (one nearest neighbour): its
    out-of-fold scores rank the patients against the label here, and the fusion weighs it
    negatively (``fit`` warns of it).

    >>> import warnings
    >>> import pandas as pd
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from p53radiomics.fusion import StackingFusion, negative_branch_weights
    >>> X, y = make_classification(n_samples=30, n_features=2, n_informative=1, n_redundant=0,
    ...                            n_clusters_per_class=1, random_state=0)
    >>> X = pd.DataFrame(X, columns=["ltd", "noise"])
    >>> def branch(column, model):
    ...     return make_pipeline(make_column_transformer(("passthrough", [column])), model)
    >>> fusion = StackingFusion([("size", branch("ltd", LogisticRegression())),
    ...                          ("memorizer", branch("noise", KNeighborsClassifier(1)))], cv=3)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fusion = fusion.fit(X, y)
    >>> [w.category.__name__ for w in caught]
    ['InvertedBranchWarning']
    >>> negative_branch_weights(fusion)
    {'memorizer': -0.367...}
    """
    check_is_fitted(fusion, "final_estimator_")
    names = [name for name, est in fusion.estimators if est != "drop"]
    coef = getattr(fusion.final_estimator_, "coef_", None)
    if coef is None or np.shape(coef) != (1, len(names)):
        return {}
    return {name: float(c) for name, c in zip(names, np.ravel(coef), strict=True) if c < 0}
