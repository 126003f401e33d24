"""Decision curves: net benefit of models against treating everyone and treating no one."""

import numpy as np

from ..metrics import net_benefit
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

__all__ = ["DecisionCurveDisplay"]


class DecisionCurveDisplay(_ProbabilityDisplayMixin):
    """Decision curves of one or more models, with the treat-all and treat-none references.

    Use :meth:`from_predictions` or :meth:`from_estimator`; all parameters are stored as
    attributes. The study's Figure 3D, 3E.

    Parameters
    ----------
    thresholds : ndarray
        Threshold probabilities, shared by all curves.
    net_benefit : ndarray or list of ndarray
        Net benefit of each model at each threshold; a list gives one curve per entry.
    treat_all : ndarray, default=None
        Net benefit of treating everyone at each threshold.
    name : str or list of str, default=None
        Name of each curve in the legend.
    pos_label : int, float, bool or str, default=None
        Positive class, shown in the axis label.

    Attributes
    ----------
    line_ : matplotlib Line2D or list of Line2D
        The models' decision curves.
    treat_all_ : matplotlib Line2D or None
        The treat-all curve, or ``None``.
    treat_none_ : matplotlib Line2D or None
        The treat-none line (net benefit 0), or ``None``.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    p53radiomics.metrics.net_benefit : The numbers drawn here.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.plotting import DecisionCurveDisplay
    >>> rng = np.random.default_rng(0)
    >>> risk = rng.uniform(size=200)
    >>> y = (rng.uniform(size=200) < risk).astype(int)
    >>> display = DecisionCurveDisplay.from_predictions(y, {"combined": risk, "flat": risk / 2 + 0.25})
    >>> [line.get_label() for line in display.line_]
    ['combined', 'flat']
    >>> display.treat_all_.get_label(), display.treat_none_.get_label()
    ('Treat all', 'Treat none')
    """

    def __init__(self, *, thresholds, net_benefit, treat_all=None, name=None, pos_label=None):
        self.thresholds = thresholds
        self.net_benefit = net_benefit
        self.treat_all = treat_all
        self.name = name
        self.pos_label = pos_label

    def plot(
        self,
        ax=None,
        *,
        name=None,
        curve_kwargs=None,
        plot_treat_all=True,
        plot_treat_none=True,
        ylim=None,
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
        plot_treat_all : bool, default=True
            Draw the net benefit of treating everyone.
        plot_treat_none : bool, default=True
            Draw the net benefit of treating no one (0).
        ylim : tuple of (float, float), default=None
            Limits of the net-benefit axis; ``None`` fits the models' curves and the prevalence,
            cutting off the steep fall of the treat-all curve.
        despine : bool, default=False
            Remove the top and right spines.

        Returns
        -------
        display : DecisionCurveDisplay
            This object, with the artists stored.
        """
        several = isinstance(self.net_benefit, list)
        benefits = self.net_benefit if several else [self.net_benefit]
        n = len(benefits)
        names = _per_curve(self.name if name is None else name, n, "name")
        thresholds = np.asarray(self.thresholds)
        self.ax_, self.figure_ = get_axes(ax)

        lines = []
        for benefit, label, kw in zip(benefits, names, _curve_kwargs(curve_kwargs, n), strict=True):
            if label is not None:
                kw.setdefault("label", str(label))
            (line,) = self.ax_.plot(thresholds, benefit, **kw)
            lines.append(line)
        self.line_ = _one_or_list(lines)
        self.treat_all_ = None
        if plot_treat_all and self.treat_all is not None:
            (self.treat_all_,) = self.ax_.plot(
                thresholds, self.treat_all, color="0.5", linewidth=1, label="Treat all"
            )
        self.treat_none_ = None
        if plot_treat_none:
            self.treat_none_ = self.ax_.axhline(0.0, color="k", linewidth=1, label="Treat none")

        if ylim is None:
            top = max(float(np.max(b)) for b in benefits)
            if self.treat_all is not None:
                top = max(top, float(np.max(self.treat_all)))
            top = max(top, 0.01)
            ylim = (-0.15 * top, 1.1 * top)
        suffix = f" (Positive class: {self.pos_label})" if self.pos_label is not None else ""
        self.ax_.set(xlabel="Threshold probability", ylabel="Net benefit" + suffix, ylim=ylim)
        _finish_axes(self.ax_, despine=despine, legend_loc="upper right")
        return self

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_score,
        *,
        thresholds=None,
        harm=0.0,
        pos_label=None,
        name=None,
        ax=None,
        **plot_kwargs,
    ):
        """Compute and draw decision curves from labels and predicted risks.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Binary outcome.
        y_score : array-like of shape (n_samples,) or mapping of str to such arrays
            Predicted risks in [0, 1], or several named sets of them on the same patients.
        thresholds : array-like, default=None
            Threshold probabilities in [0, 1); ``None`` is 0.01, 0.02, ..., 0.99.
        harm : float, default=0.0
            Harm of the test, subtracted from each model's net benefit.
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
        display : DecisionCurveDisplay
            The display, drawn.

        Examples
        --------
        >>> from p53radiomics.plotting import DecisionCurveDisplay
        >>> y = [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]
        >>> risk = [0.05, 0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.65, 0.8, 0.9]
        >>> display = DecisionCurveDisplay.from_predictions(y, risk, thresholds=[0.1, 0.5])
        >>> display.net_benefit.round(3).tolist(), display.treat_all.round(3).tolist()
        ([0.456, 0.3], [0.444, 0.0])
        """
        named = _named_scores(y_score, name)
        positive, scores = check_binary_scores(
            y_true, *named.values(), pos_label=pos_label, names=list(named)
        )
        tables = [
            net_benefit(positive, score, thresholds, harm=harm, pos_label=True) for score in scores
        ]
        benefits = [table["net_benefit"].to_numpy() for table in tables]
        display = cls(
            thresholds=tables[0]["threshold"].to_numpy(),
            net_benefit=_one_or_list(benefits),
            treat_all=tables[0]["treat_all"].to_numpy(),
            name=_one_or_list(list(named)),
            pos_label=pos_label,
        )
        return display.plot(ax=ax, **plot_kwargs)
