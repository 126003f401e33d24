"""Calibration curves with calibration slope, intercept and Brier score."""

from ..metrics import calibration_summary
from ..metrics._checks import check_binary_scores
from ._base import (
    _curve_kwargs,
    _finish_axes,
    _named_scores,
    _one_or_list,
    _per_curve,
    _ProbabilityDisplayMixin,
    get_axes,
)

__all__ = ["CalibrationDisplay"]


class CalibrationDisplay(_ProbabilityDisplayMixin):
    """Calibration curves (reliability diagrams) of one or more models, with their statistics.

    Use :meth:`from_predictions` or :meth:`from_estimator`; all parameters are stored as
    attributes. Like :class:`sklearn.calibration.CalibrationDisplay`, with the calibration slope,
    intercept and Brier score of each model in the legend (the study's Figure 3B, 3C).

    Parameters
    ----------
    prob_true : ndarray or list of ndarray
        Fraction of positives in each bin; a list gives one curve per entry.
    prob_pred : ndarray or list of ndarray
        Mean predicted probability in each bin, shaped like `prob_true`.
    slope : float or list of float, default=None
        Calibration slope of each model.
    intercept : float or list of float, default=None
        Calibration intercept of each model.
    brier : float or list of float, default=None
        Brier score of each model.
    name : str or list of str, default=None
        Name of each curve in the legend.
    pos_label : int, float, bool or str, default=None
        Positive class, shown in the axis labels.

    Attributes
    ----------
    line_ : matplotlib Line2D or list of Line2D
        The calibration curves.
    ref_line_ : matplotlib Line2D or None
        The diagonal of perfect calibration, or ``None``.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    p53radiomics.metrics.calibration_summary : The statistics drawn here.
    sklearn.calibration.CalibrationDisplay : The display this one extends.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.plotting import CalibrationDisplay
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=300)
    >>> y = (rng.uniform(size=300) < p).astype(int)
    >>> display = CalibrationDisplay.from_predictions(y, p, n_bins=5, name="combined")
    >>> display.line_.get_label()
    'combined (slope 1.13, intercept -0.21, Brier 0.153)'
    """

    def __init__(
        self,
        *,
        prob_true,
        prob_pred,
        slope=None,
        intercept=None,
        brier=None,
        name=None,
        pos_label=None,
    ):
        self.prob_true = prob_true
        self.prob_pred = prob_pred
        self.slope = slope
        self.intercept = intercept
        self.brier = brier
        self.name = name
        self.pos_label = pos_label

    def plot(self, ax=None, *, name=None, ref_line=True, curve_kwargs=None, despine=False):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        name : str or list of str, default=None
            Legend names, overriding those given at construction.
        ref_line : bool, default=True
            Draw the diagonal of perfect calibration.
        curve_kwargs : dict or list of dict, default=None
            Passed to ``ax.plot`` for every curve (a dict) or for each curve (a list).
        despine : bool, default=False
            Remove the top and right spines.

        Returns
        -------
        display : CalibrationDisplay
            This object, with the artists stored.
        """
        several = isinstance(self.prob_true, list)
        trues = self.prob_true if several else [self.prob_true]
        n = len(trues)
        preds = _per_curve(self.prob_pred if several else [self.prob_pred], n, "prob_pred")
        slopes = _per_curve(self.slope, n, "slope")
        intercepts = _per_curve(self.intercept, n, "intercept")
        briers = _per_curve(self.brier, n, "brier")
        names = _per_curve(self.name if name is None else name, n, "name")
        self.ax_, self.figure_ = get_axes(ax)

        if ref_line:
            (self.ref_line_,) = self.ax_.plot(
                [0, 1], [0, 1], "k:", linewidth=1, label="Perfectly calibrated"
            )
        else:
            self.ref_line_ = None
        lines = []
        for true, pred, slope, intercept, brier, label, kw in zip(
            trues,
            preds,
            slopes,
            intercepts,
            briers,
            names,
            _curve_kwargs(curve_kwargs, n),
            strict=True,
        ):
            if "label" not in kw and label is not None:
                stats = [
                    f"{what} {fmt.format(value)}"
                    for what, fmt, value in (
                        ("slope", "{:.2f}", slope),
                        ("intercept", "{:.2f}", intercept),
                        ("Brier", "{:.3f}", brier),
                    )
                    if value is not None
                ]
                kw["label"] = f"{label} ({', '.join(stats)})" if stats else str(label)
            kw.setdefault("marker", "s")
            (line,) = self.ax_.plot(pred, true, **kw)
            lines.append(line)
        self.line_ = _one_or_list(lines)

        suffix = f" (Positive class: {self.pos_label})" if self.pos_label is not None else ""
        self.ax_.set(
            xlabel="Mean predicted probability" + suffix,
            ylabel="Fraction of positives" + suffix,
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
        y_prob,
        *,
        n_bins=10,
        strategy="uniform",
        pos_label=None,
        name=None,
        ax=None,
        **plot_kwargs,
    ):
        """Compute and draw calibration curves from labels and predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Binary labels.
        y_prob : array-like of shape (n_samples,) or mapping of str to such arrays
            Predicted probabilities of the positive class, or several named sets of them.
        n_bins : int, default=10
            Bins of the curve.
        strategy : {"uniform", "quantile"}, default="uniform"
            Equal-width bins, or bins of equal numbers of samples.
        pos_label : int, float, bool or str, default=None
            Positive class; inferred only for labels in {0, 1} or {-1, 1}.
        name : str, default=None
            Legend name of a single model (``"Classifier"`` by default); keys name a mapping.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        **plot_kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CalibrationDisplay
            The display, drawn.

        Examples
        --------
        >>> from p53radiomics.plotting import CalibrationDisplay
        >>> y = [0, 0, 1, 0, 1, 1, 0, 1]
        >>> p = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
        >>> display = CalibrationDisplay.from_predictions(y, p, n_bins=2)
        >>> display.prob_true, display.prob_pred
        (array([0.25, 0.75]), array([0.25, 0.75]))
        """
        named = _named_scores(y_prob, name)
        positive, probs = check_binary_scores(
            y_true, *named.values(), pos_label=pos_label, names=list(named)
        )
        summaries = [
            calibration_summary(positive, prob, n_bins=n_bins, strategy=strategy, pos_label=True)
            for prob in probs
        ]

        display = cls(
            prob_true=_one_or_list([summary.prob_true for summary in summaries]),
            prob_pred=_one_or_list([summary.prob_pred for summary in summaries]),
            slope=_one_or_list([summary.slope for summary in summaries]),
            intercept=_one_or_list([summary.intercept for summary in summaries]),
            brier=_one_or_list([summary.brier for summary in summaries]),
            name=_one_or_list(list(named)),
            pos_label=pos_label,
        )
        return display.plot(ax=ax, **plot_kwargs)
