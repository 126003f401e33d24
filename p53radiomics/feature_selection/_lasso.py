"""LassoSelector: keep the features of an L1-penalised logistic regression tuned by cross-validation."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.feature_selection import SelectorMixin, f_classif
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils._sklearn import Interval, StrOptions, _fit_context, l1_logistic_regression

__all__ = ["LassoSelector"]

#: The fewest samples of each class that LassoSelector's own cross-validation takes.
MIN_PER_CLASS = 2


class LassoSelector(SelectorMixin, BaseEstimator):
    """Select the features with non-zero coefficients in a cross-validated L1 logistic regression.

    The study's LASSO step, for a binary label: an L1-penalised logistic regression whose strength
    ``C`` is chosen by stratified cross-validation, in the manner of
    :class:`~sklearn.feature_selection.SelectFromModel`. Scale the features first (the penalty treats
    every coefficient alike).

    Parameters
    ----------
    cv : int or cross-validation generator, default=5
        Folds for choosing ``C``; an int gives :class:`~sklearn.model_selection.StratifiedKFold`
        with shuffling seeded by `random_state` (fewer folds are used when the smaller class has
        fewer members).
    Cs : int or array-like of float, default=20
        Candidate inverse penalty strengths; an int gives that many values log-spaced in
        ``[1e-3, 1e3]``.
    scoring : str, default="roc_auc"
        Criterion for choosing ``C`` (any scikit-learn scorer name).
    selection : {"best", "1se"}, default="best"
        ``"best"`` takes the ``C`` of the best mean score; ``"1se"`` the smallest ``C`` (sparsest
        model) whose mean score is within one standard error of the best, as glmnet's
        ``lambda.1se``.
    max_iter : int, default=1000
        Iterations of the solver (liblinear for two classes, saga for more).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of the folds and the solver.
    n_jobs : int, default=None
        Parallel fits of the cross-validation (joblib).

    Attributes
    ----------
    estimator_ : LogisticRegression
        The L1 model refitted on all the data with the chosen ``C``.
    C_ : float
        The chosen inverse penalty strength.
    cv_results_ : dict
        :class:`~sklearn.model_selection.GridSearchCV`'s results over `Cs`.
    threshold_ : float
        Smallest absolute coefficient that counts as non-zero (``1e-10``).
    n_iter_ : int
        Iterations of the solver in the refit.
    fallback_ : bool
        Whether the fallback rule chose the features (every coefficient was zero).
    support_ : ndarray of bool of shape (n_features,)
        Which features are kept; never all ``False``.
    classes_ : ndarray
        The class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Names of the features seen during fit, when `X` has string column names.

    See Also
    --------
    CorrelationFilter : the step before it in the study's radiomics branch.
    sklearn.feature_selection.SelectFromModel : the general pattern.

    Notes
    -----
    The selection is never empty. If the chosen model sets every coefficient to zero (common on
    weak signals: the intercept alone predicts as well), the fallback keeps the features that are
    non-zero in the least penalised model of `Cs` that has any, which is the first feature to enter
    the L1 path; if even that is empty (a label that no feature predicts), the single feature with
    the largest ANOVA F statistic (:func:`~sklearn.feature_selection.f_classif`) is kept.
    ``fallback_`` records it.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.feature_selection import LassoSelector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 6))
    >>> y = (X[:, 0] - X[:, 3] + 0.5 * rng.normal(size=120) > 0).astype(int)
    >>> selector = LassoSelector(random_state=0, selection="1se").fit(X, y)
    >>> selector.get_support(indices=True)
    array([0, 3])
    """

    _parameter_constraints = {
        "cv": ["cv_object"],
        "Cs": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "scoring": [str],
        "selection": [StrOptions({"best", "1se"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        cv=5,
        *,
        Cs=20,
        scoring="roc_auc",
        selection="best",
        max_iter=1000,
        random_state=None,
        n_jobs=None,
    ):
        self.cv = cv
        self.Cs = Cs
        self.scoring = scoring
        self.selection = selection
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _candidate_Cs(self):
        if isinstance(self.Cs, Integral):
            return np.logspace(-3, 3, int(self.Cs))
        Cs = np.sort(np.asarray(self.Cs, dtype=float))
        if Cs.size == 0 or np.any(Cs <= 0):
            raise ValueError(f"Cs must be positive numbers, got {self.Cs!r}")
        return Cs

    def _cv(self, y):
        if not isinstance(self.cv, Integral):
            return self.cv
        smallest = np.unique(y, return_counts=True)[1].min()
        folds = int(min(self.cv, smallest))
        if folds < MIN_PER_CLASS:
            raise ValueError(
                f"LassoSelector needs at least {MIN_PER_CLASS} samples of each class for cross-validation; the smallest class has {smallest}"
            )
        return StratifiedKFold(folds, shuffle=True, random_state=self.random_state)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Choose ``C`` by cross-validation and keep the non-zero coefficients.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric features, preferably standardised.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : LassoSelector
            The fitted selector.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(
                f"y holds 1 class ({self.classes_[0]!r}); LassoSelector needs two or more"
            )
        Cs = self._candidate_Cs()
        solver = "liblinear" if self.classes_.size == 2 else "saga"  # liblinear is binary only
        base = l1_logistic_regression(
            solver=solver, max_iter=self.max_iter, random_state=self.random_state
        )
        scoring = self.scoring
        if scoring == "roc_auc" and self.classes_.size > 2:
            scoring = "roc_auc_ovr"
        search = GridSearchCV(
            base,
            {"C": Cs},
            scoring=scoring,
            cv=self._cv(y),
            n_jobs=self.n_jobs,
            refit=False,
            error_score=np.nan,
        )
        search.fit(X, y)
        self.cv_results_ = search.cv_results_
        means = np.nan_to_num(
            np.asarray(search.cv_results_["mean_test_score"], dtype=float), nan=-np.inf
        )
        best = int(np.argmax(means))
        if self.selection == "1se":
            n_splits = sum(
                k.startswith("split") and k.endswith("_test_score") for k in search.cv_results_
            )
            se = search.cv_results_["std_test_score"][best] / np.sqrt(max(n_splits, 1))
            best = int(np.flatnonzero(means >= means[best] - se)[0])  # Cs ascending: the sparsest
        self.C_ = float(Cs[best])
        self.threshold_ = 1e-10
        self.estimator_ = clone(base).set_params(C=self.C_).fit(X, y)
        self.n_iter_ = int(np.max(self.estimator_.n_iter_))
        support = np.any(np.abs(self.estimator_.coef_) > self.threshold_, axis=0)
        self.fallback_ = not support.any()
        if self.fallback_:
            support = self._fallback(X, y, Cs, base)
        self.support_ = support
        return self

    def _fallback(self, X, y, Cs, base):
        for C in Cs[Cs > self.C_]:
            coef = np.abs(clone(base).set_params(C=float(C)).fit(X, y).coef_).max(axis=0)
            if np.any(coef > self.threshold_):
                return coef > self.threshold_
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.nan_to_num(f_classif(X, y)[0], nan=-np.inf)
        support = np.zeros(X.shape[1], dtype=bool)
        support[int(np.argmax(scores))] = True
        return support

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_
