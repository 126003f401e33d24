"""ROC curves with a confidence band, AUCs with confidence intervals and DeLong p-values."""

from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from ..metrics import delong_test, format_p_value, roc_auc_ci
from ..metrics._checks import check_binary_scores
from ..metrics._roc import roc_band
from ._base import (
    _curve_kwargs,
    _estimator_scores,
    _finish_axes,
    _named_scores,
    _one_or_list,
    _per_curve,
    get_axes,
)

__all__ = ["RocCurveDisplay"]


class RocCurveDisplay:
    """ROC curves of one or more scores, with confidence bands and DeLong tests between them.

    Use :meth:`from_predictions` or :meth:`from_estimator` to compute everything; all parameters
    are stored as attributes. Like :class:`sklearn.metrics.RocCurveDisplay`, but each curve also
    carries its AUC's confidence interval and a pointwise bootstrap band, and several curves on the
    same patients carry DeLong's paired tests between them (as the study's Figures S4, S6, S7).

    Parameters
    ----------
    fpr : ndarray or list of ndarray
        False positive rates; a list gives one curve per entry.
    tpr : ndarray or list of ndarray
        True positive rates, shaped like `fpr`.
    roc_auc : float or list of float, default=None
        AUC of each curve, shown in the legend.
    roc_auc_ci : tuple of (float, float) or list of them, default=None
        Confidence interval of each AUC, shown in the legend.
    band : tuple of (ndarray, ndarray, ndarray) or list of them, default=None
        ``(fpr_grid, tpr_low, tpr_high)``: a band drawn around each curve.
    name : str or list of str, default=None
        Name of each curve in the legend.
    pos_label : int, float, bool or str, default=None
        Positive class, shown in the axis labels.
    delong : pandas.DataFrame, default=None
        DeLong tests between pairs of curves, columns ``model_a``, ``model_b``, ``auc_a``,
        ``auc_b``, ``z``, ``p_value`` (as :meth:`from_predictions` builds it).
    confidence : float, default=0.95
        Confidence level of the intervals, shown in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D or list of Line2D
        The ROC curves (one artist when there is one curve).
    band_ : matplotlib PolyCollection, list of them, or None
        The confidence bands; ``None`` when none is drawn.
    chance_level_ : matplotlib Line2D or None
        The diagonal, or ``None`` when not drawn.
    delong_text_ : matplotlib Text or None
        The box listing DeLong p-values, or ``None``.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    p53radiomics.metrics.roc_auc_ci : AUC with its confidence interval.
    p53radiomics.metrics.delong_test : DeLong's paired test.
    sklearn.metrics.RocCurveDisplay : The display this one extends.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.plotting import RocCurveDisplay
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 100)
    >>> scores = {"clinical": y + rng.normal(0, 1, 100), "combined": y + rng.normal(0, 0.6, 100)}
    >>> display = RocCurveDisplay.from_predictions(y, scores, n_bootstraps=100, random_state=0)
    >>> display.delong[["model_a", "model_b"]].values.tolist()
    [['clinical', 'combined']]
    >>> display.line_[1].get_label()
    'combined (AUC = 0.852, 95% CI 0.777–0.927)'
    """

    def __init__(
        self,
        *,
        fpr,
        tpr,
        roc_auc=None,
        roc_auc_ci=None,
        band=None,
        name=None,
        pos_label=None,
        delong=None,
        confidence=0.95,
    ):
        self.fpr = fpr
        self.tpr = tpr
        self.roc_auc = roc_auc
        self.roc_auc_ci = roc_auc_ci
        self.band = band
        self.name = name
        self.pos_label = pos_label
        self.delong = delong
        self.confidence = confidence

    def plot(
        self,
        ax=None,
        *,
        name=None,
        curve_kwargs=None,
        plot_chance_level=True,
        chance_level_kw=None,
        band_kw=None,
        show_delong=True,
        despine=False,
    ):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        name : str or list of str, default=None
            Legend names, overriding those given at construction.
        curve_kwargs : dict or list of dict, default=None
            Passed to ``ax.plot`` for every curve (a dict) or for each curve (a list).
        plot_chance_level : bool, default=True
            Draw the diagonal of a useless score.
        chance_level_kw : dict, default=None
            Passed to ``ax.plot`` for the diagonal.
        band_kw : dict, default=None
            Passed to ``ax.fill_between`` for the bands (default: the curve's colour, alpha 0.2).
        show_delong : bool, default=True
            Write the DeLong p-values between curves on the axes, when there are any.
        despine : bool, default=False
            Remove the top and right spines.

        Returns
        -------
        display : RocCurveDisplay
            This object, with the artists stored.
        """
        fprs = self.fpr if isinstance(self.fpr, list) else [self.fpr]
        n = len(fprs)
        tprs = _per_curve(self.tpr if isinstance(self.fpr, list) else [self.tpr], n, "tpr")
        aucs = _per_curve(self.roc_auc, n, "roc_auc")
        cis = _per_curve(self.roc_auc_ci, n, "roc_auc_ci")
        bands = _per_curve(self.band, n, "band")
        names = _per_curve(self.name if name is None else name, n, "name")
        self.ax_, self.figure_ = get_axes(ax)

        lines, polys = [], []
        level = f"{100 * self.confidence:g}%"
        for fpr, tpr, auc, ci, band, label, kw in zip(
            fprs, tprs, aucs, cis, bands, names, _curve_kwargs(curve_kwargs, n), strict=True
        ):
            if "label" not in kw and label is not None:
                stats = []
                if auc is not None:
                    stats.append(f"AUC = {auc:.3f}")
                if ci is not None:
                    stats.append(f"{level} CI {ci[0]:.3f}–{ci[1]:.3f}")
                kw["label"] = f"{label} ({', '.join(stats)})" if stats else str(label)
            (line,) = self.ax_.plot(fpr, tpr, **kw)
            lines.append(line)
            if band is not None:
                grid, low, high = band
                fill = {"color": line.get_color(), "alpha": 0.2, "linewidth": 0, **(band_kw or {})}
                polys.append(self.ax_.fill_between(grid, low, high, step="post", **fill))
        self.line_ = _one_or_list(lines)
        self.band_ = _one_or_list(polys) if polys else None

        if plot_chance_level:
            kw = {
                "color": "k",
                "linestyle": "--",
                "linewidth": 1,
                "label": "Chance level (AUC = 0.5)",
            }
            (self.chance_level_,) = self.ax_.plot(
                (0, 1), (0, 1), **{**kw, **(chance_level_kw or {})}
            )
        else:
            self.chance_level_ = None

        self.delong_text_ = None
        if show_delong and self.delong is not None and len(self.delong):
            text = "\n".join(
                f"{row.model_a} vs {row.model_b}: p = {format_p_value(row.p_value)}"
                for row in self.delong.itertuples()
            )
            self.delong_text_ = self.ax_.text(
                0.98,
                0.45,
                "DeLong test\n" + text,
                transform=self.ax_.transAxes,
                ha="right",
                va="bottom",
                fontsize="small",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
            )

        suffix = f" (Positive label: {self.pos_label})" if self.pos_label is not None else ""
        self.ax_.set(
            xlabel="1 - Specificity (False Positive Rate)" + suffix,
            ylabel="Sensitivity (True Positive Rate)" + suffix,
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            aspect="equal",
        )
        _finish_axes(self.ax_, despine=despine, legend_loc="lower right")
        return self

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_score,
        *,
        pos_label=None,
        name=None,
        confidence=0.95,
        ci_method="delong",
        band=True,
        n_bootstraps=500,
        random_state=None,
        drop_intermediate=True,
        ax=None,
        **plot_kwargs,
    ):
        """Compute and draw ROC curves from labels and scores.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Binary labels.
        y_score : array-like of shape (n_samples,) or mapping of str to such arrays
            One score, or several named scores of the same patients (``{"clinical": s1, ...}``);
            higher means more likely positive.
        pos_label : int, float, bool or str, default=None
            Positive class; inferred only for labels in {0, 1} or {-1, 1}.
        name : str, default=None
            Legend name of a single score (``"Classifier"`` by default); the keys name a mapping.
        confidence : float, default=0.95
            Confidence level of the AUC intervals and the bands.
        ci_method : {"delong", "bootstrap"}, default="delong"
            Method of the AUC intervals, see :func:`~p53radiomics.metrics.roc_auc_ci`.
        band : bool, default=True
            Compute a pointwise stratified bootstrap band of the sensitivity at each false
            positive rate.
        n_bootstraps : int, default=500
            Bootstrap samples of the bands (and of the AUC intervals with
            ``ci_method="bootstrap"``).
        random_state : int, RandomState instance or None, default=None
            Seed of the bootstrap.
        drop_intermediate : bool, default=True
            Passed to :func:`sklearn.metrics.roc_curve`.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        **plot_kwargs : dict
            Passed to :meth:`plot` (``curve_kwargs``, ``plot_chance_level``, ``show_delong``...).

        Returns
        -------
        display : RocCurveDisplay
            The display, drawn. Its ``delong`` table holds every pair of curves.

        Examples
        --------
        >>> from p53radiomics.plotting import RocCurveDisplay
        >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
        >>> display = RocCurveDisplay.from_predictions(
        ...     y, [0.1, 0.3, 0.35, 0.6, 0.4, 0.7, 0.8, 0.9], name="DL", random_state=0)
        >>> display.line_.get_label()
        'DL (AUC = 0.938, 95% CI 0.764–1.000)'
        """
        named = _named_scores(y_score, name)
        positive, scores = check_binary_scores(
            y_true, *named.values(), pos_label=pos_label, names=list(named)
        )
        grid = np.linspace(0, 1, 101)
        fprs, tprs, aucs, cis, bands = [], [], [], [], []
        for score in scores:
            fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=drop_intermediate)
            auc, low, high = roc_auc_ci(
                positive,
                score,
                confidence,
                ci_method,
                n_bootstraps=n_bootstraps,
                random_state=random_state,
                pos_label=True,
            )
            fprs.append(fpr)
            tprs.append(tpr)
            aucs.append(auc)
            cis.append((low, high))
            if band:
                _, low_band, high_band = roc_band(
                    positive,
                    score,
                    grid,
                    confidence=confidence,
                    n_bootstraps=n_bootstraps,
                    random_state=random_state,
                )
                bands.append((grid, low_band, high_band))
        tests = []
        for (i, a), (j, b) in combinations(enumerate(named), 2):
            z, p = delong_test(positive, scores[i], scores[j], pos_label=True)
            tests.append(
                {
                    "model_a": a,
                    "model_b": b,
                    "auc_a": aucs[i],
                    "auc_b": aucs[j],
                    "z": z,
                    "p_value": p,
                }
            )
        delong = pd.DataFrame(
            tests, columns=["model_a", "model_b", "auc_a", "auc_b", "z", "p_value"]
        )
        several = len(scores) > 1
        display = cls(
            fpr=_one_or_list(fprs),
            tpr=_one_or_list(tprs),
            roc_auc=_one_or_list(aucs),
            roc_auc_ci=_one_or_list(cis),
            band=_one_or_list(bands) if band else None,
            name=_one_or_list(list(named)),
            pos_label=pos_label,
            delong=delong if several else None,
            confidence=confidence,
        )
        return display.plot(ax=ax, **plot_kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, X, y, *, response_method="auto", pos_label=None, name=None, **kwargs
    ):
        """Compute and draw ROC curves of fitted classifiers on data.

        Parameters
        ----------
        estimator : fitted classifier or mapping of str to fitted classifiers
            One binary classifier, or several named ones evaluated on the same `X` (their curves
            are then compared by DeLong's test).
        X : array-like or pandas.DataFrame
            Input of the classifiers.
        y : array-like of shape (n_samples,)
            True labels.
        response_method : {"auto", "predict_proba", "decision_function"}, default="auto"
            Method giving the scores; ``"auto"`` tries ``predict_proba`` first.
        pos_label : int, float, bool or str, default=None
            Positive class; by default the last of ``estimator.classes_``.
        name : str, default=None
            Legend name of a single estimator (its class name by default).
        **kwargs : dict
            Passed to :meth:`from_predictions`.

        Returns
        -------
        display : RocCurveDisplay
            The display, drawn.

        Examples
        --------
        >>> from sklearn.datasets import make_classification
        >>> from sklearn.linear_model import LogisticRegression
        >>> from p53radiomics.plotting import RocCurveDisplay
        >>> X, y = make_classification(n_samples=120, random_state=0)
        >>> models = {"C=1": LogisticRegression().fit(X, y),
        ...           "C=0.01": LogisticRegression(C=0.01).fit(X, y)}
        >>> display = RocCurveDisplay.from_estimator(models, X, y, band=False)
        >>> len(display.line_), display.band_ is None
        (2, True)
        """
        scores, pos_label = _estimator_scores(
            estimator, X, response_method=response_method, pos_label=pos_label, name=name
        )
        return cls.from_predictions(y, scores, pos_label=pos_label, **kwargs)
