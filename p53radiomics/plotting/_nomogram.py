"""Nomogram of a logistic model: a points scale per predictor, total points to probability."""

import numpy as np
from scipy.special import expit, logit

from ._base import get_axes

__all__ = ["NomogramDisplay"]

_DEFAULT_PROBABILITY_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _nice_ticks(low, high, n_ticks):
    """Round tick values inside [low, high] (matplotlib's MaxNLocator), ends kept when too few."""
    from matplotlib.ticker import MaxNLocator

    if high <= low:
        return np.array([low])
    ticks = MaxNLocator(nbins=n_ticks).tick_values(low, high)
    ticks = ticks[
        (ticks >= low - 1e-9 * abs(high - low)) & (ticks <= high + 1e-9 * abs(high - low))
    ]
    return ticks if len(ticks) >= 2 else np.array([low, high])


def _logit_response(estimator, X):
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64).ravel()
    return logit(np.clip(np.asarray(estimator.predict_proba(X))[:, 1], 1e-15, 1 - 1e-15))


def _linear_model(estimator, X):
    """Intercept and per-unit coefficients of a model whose logit is linear in the columns of X.

    Found by moving one column at a time away from the median row, so that a pipeline of affine
    steps (a scaler) and a logistic regression works as well as a bare logistic regression; the
    result is then checked on the rows of X.
    """
    import pandas as pd

    frame = X if isinstance(X, pd.DataFrame) else None
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2 or len(values) < 2:
        raise ValueError("X must be a 2D table of the model's numeric inputs with at least 2 rows")
    base = np.median(values, axis=0)
    step = values.std(axis=0)
    step[step == 0] = 1.0
    probe = np.tile(base, (values.shape[1] + 1, 1))
    probe[1:] += np.diag(step)

    def as_input(rows):
        # Probe rows keep the column names of a DataFrame, as float (an integer column moved by
        # its standard deviation is not an integer any more).
        return pd.DataFrame(rows, columns=frame.columns) if frame is not None else rows

    response = _logit_response(estimator, as_input(probe))
    coef = (response[1:] - response[0]) / step
    intercept = response[0] - base @ coef
    rows = values[:200]
    expected = _logit_response(estimator, as_input(rows))
    if not np.allclose(intercept + rows @ coef, expected, rtol=1e-6, atol=1e-6):
        raise ValueError(
            "the model's logit is not linear in the columns of X, so it has no nomogram; give a "
            "logistic regression (or a pipeline of scalers and a logistic regression) and the "
            "table of its inputs"
        )
    return float(intercept), coef


class NomogramDisplay:
    """Nomogram of a logistic model: points per predictor, total points, predicted probability.

    Each predictor gets a scale of points (0 to `max_points` for the predictor whose effect spans
    the widest range of the logit, proportionally fewer for the others); the points of a patient's
    values add up to total points, read off against the predicted probability on the bottom scale.
    As the study's Figure 3A, drawn with matplotlib. Use :meth:`from_estimator`.

    Parameters
    ----------
    coef : array-like of shape (n_features,)
        Coefficient of each predictor on the logit scale, per unit.
    intercept : float
        Intercept on the logit scale.
    feature_ticks : list of array-like
        Values marked on each predictor's scale; their minimum and maximum bound the scale.
    feature_names : list of str, default=None
        Names of the predictors (``x0``, ``x1``... by default).
    probability_ticks : sequence of float, default=None
        Probabilities marked on the bottom scale (those reachable by the total points);
        ``None`` is 0.01, 0.05, 0.1, 0.2, ..., 0.9, 0.95, 0.99.
    max_points : float, default=100
        Points of the predictor with the widest effect.
    outcome_name : str, default="Probability"
        Label of the bottom scale, e.g. ``"Risk of P53 mutation"``.

    Attributes
    ----------
    points_per_unit_ : ndarray of shape (n_features,)
        Points added by one unit of each predictor (negative for a protective one).
    max_total_points_ : float
        Highest total points.
    rows_ : dict of str to matplotlib Line2D
        The scale line of each row, keyed by its label (``"Points"``, the predictors,
        ``"Total points"`` and `outcome_name`).
    tick_labels_ : dict of str to list of str
        The tick labels written on each row.
    ax_ : matplotlib Axes
        Axes holding the nomogram.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    p53radiomics.metrics.logistic_odds_ratios : The same model as odds ratios.

    Notes
    -----
    With coefficients :math:`\\beta_j` over ranges :math:`[l_j, h_j]`, let
    :math:`r_j = |\\beta_j|(h_j - l_j)` and :math:`R = \\max_j r_j`. A value :math:`x` of predictor
    :math:`j` scores :math:`M(\\beta_j x - \\min(\\beta_j l_j, \\beta_j h_j))/R` points, and total
    points :math:`T` give probability
    :math:`\\mathrm{expit}(\\beta_0 + \\sum_j \\min(\\beta_j l_j, \\beta_j h_j) + T R / M)`,
    :math:`M` being `max_points` (as R's ``rms::nomogram``).

    Examples
    --------
    >>> from p53radiomics.plotting import NomogramDisplay
    >>> display = NomogramDisplay(
    ...     coef=[0.02, 1.35], intercept=-2.0, feature_ticks=[[0, 50, 100, 150], [0, 1]],
    ...     feature_names=["LTD (mm)", "rim-APHE"]).plot()
    >>> list(display.rows_)
    ['Points', 'LTD (mm)', 'rim-APHE', 'Total points', 'Probability']
    >>> display.tick_labels_["rim-APHE"]
    ['0', '1']
    >>> display.points_per_unit_.round(3)
    array([ 0.667, 45.   ])
    >>> points = display.predict_points([[60, 1]])
    >>> points, display.points_to_probability(points).round(3)
    (array([85.]), array([0.634]))
    """

    def __init__(
        self,
        *,
        coef,
        intercept,
        feature_ticks,
        feature_names=None,
        probability_ticks=None,
        max_points=100,
        outcome_name="Probability",
    ):
        self.coef = coef
        self.intercept = intercept
        self.feature_ticks = feature_ticks
        self.feature_names = feature_names
        self.probability_ticks = probability_ticks
        self.max_points = max_points
        self.outcome_name = outcome_name

    def _check(self):
        coef = np.asarray(self.coef, dtype=np.float64).ravel()
        ticks = [np.sort(np.asarray(t, dtype=np.float64).ravel()) for t in self.feature_ticks]
        names = (
            [f"x{j}" for j in range(len(coef))]
            if self.feature_names is None
            else [str(n) for n in self.feature_names]
        )
        if not (len(coef) == len(ticks) == len(names)) or len(coef) == 0:
            raise ValueError(
                f"coef ({len(coef)}), feature_ticks ({len(ticks)}) and feature_names "
                f"({len(names)}) must describe the same predictors, at least one"
            )
        if not np.isfinite(coef).all() or not np.isfinite(self.intercept):
            raise ValueError("coef and intercept must be finite")
        if any(t.size == 0 or not np.isfinite(t).all() for t in ticks):
            raise ValueError("each predictor needs at least one finite tick value")
        spans = np.abs(coef) * np.array([t[-1] - t[0] for t in ticks])
        if spans.max() <= 0:
            raise ValueError("no predictor changes the logit over its range: nothing to draw")
        # Each predictor's points start at 0 at the end of its range with the lower logit.
        low_effect = np.minimum(
            coef * np.array([t[0] for t in ticks]), coef * np.array([t[-1] for t in ticks])
        )
        return coef, ticks, names, spans, low_effect

    def predict_points(self, X):
        """Total points of patients, as read off the nomogram.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Values of the predictors, in the order of `coef`.

        Returns
        -------
        points : ndarray of shape (n_samples,)
            Total points; :meth:`points_to_probability` turns them into probabilities.
        """
        coef, _, _, spans, low_effect = self._check()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(coef):
            raise ValueError(f"X must have shape (n_samples, {len(coef)}); got {X.shape}")
        return float(self.max_points) * (X @ coef - low_effect.sum()) / spans.max()

    def points_to_probability(self, points):
        """Predicted probability of total points (the bottom two scales of the nomogram).

        Parameters
        ----------
        points : array-like
            Total points.

        Returns
        -------
        probability : ndarray
            The model's predicted probability.
        """
        _, _, _, spans, low_effect = self._check()
        points = np.asarray(points, dtype=np.float64)
        return expit(
            float(self.intercept) + low_effect.sum() + points * spans.max() / float(self.max_points)
        )

    def plot(self, ax=None, *, fontsize="small"):
        """Draw the nomogram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on (its frame is hidden); a new figure when ``None``.
        fontsize : str or float, default="small"
            Size of the tick labels.

        Returns
        -------
        display : NomogramDisplay
            This object, with the artists stored.
        """
        coef, ticks, names, spans, low_effect = self._check()
        top = float(self.max_points)
        scale = spans.max()
        self.points_per_unit_ = top * coef / scale
        self.max_total_points_ = float(top * spans.sum() / scale)
        self.ax_, self.figure_ = get_axes(ax)
        if ax is None:
            self.figure_.set_size_inches(8, 0.7 * (len(coef) + 3) + 0.5)
        self.rows_, self.tick_labels_ = {}, {}

        def row(y, label, positions, labels):
            positions = np.asarray(positions, dtype=np.float64)
            (self.rows_[label],) = self.ax_.plot(
                [positions.min(), positions.max()], [y, y], color="k", linewidth=1
            )
            self.ax_.vlines(positions, y, y + 0.12, color="k", linewidth=1)
            for x, text in zip(positions, labels, strict=True):
                self.ax_.text(x, y + 0.18, text, ha="center", va="bottom", fontsize=fontsize)
            self.ax_.text(-0.04 * top, y, label, ha="right", va="center")
            self.tick_labels_[label] = list(labels)

        point_ticks = _nice_ticks(0.0, top, 10)
        row(0, "Points", point_ticks, [f"{v:g}" for v in point_ticks])
        for j, (values, name) in enumerate(zip(ticks, names, strict=True)):
            points = top * (coef[j] * values - low_effect[j]) / scale
            row(-(j + 1), name, points, [f"{v:g}" for v in values])
        # The total points and probability rows are stretched to the width of the points row.
        stretch = top / self.max_total_points_
        total_ticks = _nice_ticks(0.0, self.max_total_points_, 10)
        y_total = -(len(coef) + 1)
        row(y_total, "Total points", total_ticks * stretch, [f"{v:g}" for v in total_ticks])
        probabilities = np.asarray(
            _DEFAULT_PROBABILITY_TICKS
            if self.probability_ticks is None
            else self.probability_ticks,
            dtype=np.float64,
        )
        offset = float(self.intercept) + low_effect.sum()
        totals = (logit(np.clip(probabilities, 1e-12, 1 - 1e-12)) - offset) * top / scale
        keep = (totals >= -1e-9) & (totals <= self.max_total_points_ + 1e-9)
        if not keep.any():
            # No listed probability is reachable: mark the two ends of the scale instead.
            totals = np.array([0.0, self.max_total_points_])
            probabilities = expit(offset + totals * scale / top)
            keep = np.ones(2, dtype=bool)
        row(
            y_total - 1,
            self.outcome_name,
            totals[keep] * stretch,
            [f"{p:.3g}" for p in probabilities[keep]],
        )
        self.ax_.set_xlim(-0.3 * top, 1.05 * top)
        self.ax_.set_ylim(y_total - 1.5, 0.8)
        self.ax_.set_axis_off()
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        *,
        feature_names=None,
        n_ticks=6,
        probability_ticks=None,
        max_points=100,
        outcome_name="Probability",
        ax=None,
        **plot_kwargs,
    ):
        """Draw the nomogram of a fitted logistic model over the ranges of its inputs in `X`.

        Parameters
        ----------
        estimator : fitted classifier
            A model whose logit (``decision_function``, or the logit of ``predict_proba``) is
            linear in the columns of `X`: a :class:`~sklearn.linear_model.LogisticRegression`, or
            a :class:`~sklearn.pipeline.Pipeline` of scalers and a logistic regression (the scales
            are then in the original units), e.g. the final estimator of a stacking model on the
            branch scores.
        X : array-like or pandas.DataFrame of shape (n_samples, n_features)
            Numeric inputs of the model, usually the training data: each scale spans the range
            of its column, and the linearity of the model is checked on these rows.
        feature_names : list of str, default=None
            Names of the scales; by default the columns of a DataFrame, else
            ``estimator.feature_names_in_`` or ``x0``, ``x1``...
        n_ticks : int, default=6
            Approximate number of ticks on a continuous predictor's scale; a column with two
            values (e.g. 0/1) is marked at those values only.
        probability_ticks : sequence of float, default=None
            Probabilities marked on the bottom scale.
        max_points : float, default=100
            Points of the predictor with the widest effect.
        outcome_name : str, default="Probability"
            Label of the bottom scale.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        **plot_kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : NomogramDisplay
            The display, drawn.

        Raises
        ------
        ValueError
            If the model's logit is not linear in the columns of `X`.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from sklearn.linear_model import LogisticRegression
        >>> from p53radiomics.plotting import NomogramDisplay
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"ltd": rng.uniform(10, 150, 200), "rim_aphe": rng.integers(0, 2, 200)})
        >>> y = rng.uniform(size=200) < 1 / (1 + np.exp(-(-2 + 0.02 * X.ltd + 1.3 * X.rim_aphe)))
        >>> model = LogisticRegression().fit(X, y)
        >>> display = NomogramDisplay.from_estimator(model, X, outcome_name="Risk of P53 mutation")
        >>> display.tick_labels_["ltd"]
        ['25', '50', '75', '100', '125']
        >>> np.allclose(display.coef, model.coef_.ravel())
        True
        """
        intercept, coef = _linear_model(estimator, X)
        values = np.asarray(X, dtype=np.float64)
        if feature_names is None:
            columns = getattr(X, "columns", None)
            if columns is None:
                columns = getattr(estimator, "feature_names_in_", None)
            feature_names = (
                [str(c) for c in columns]
                if columns is not None
                else [f"x{j}" for j in range(len(coef))]
            )
        feature_ticks = []
        for column in values.T:
            distinct = np.unique(column)
            if len(distinct) <= 2:
                feature_ticks.append(distinct)
            else:
                feature_ticks.append(_nice_ticks(column.min(), column.max(), n_ticks))
        display = cls(
            coef=coef,
            intercept=intercept,
            feature_ticks=feature_ticks,
            feature_names=feature_names,
            probability_ticks=probability_ticks,
            max_points=max_points,
            outcome_name=outcome_name,
        )
        return display.plot(ax=ax, **plot_kwargs)
