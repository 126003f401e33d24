"""Grad-CAM heatmaps over the phase crops of one patient, one panel per phase."""

import numpy as np

__all__ = ["GradCAMDisplay"]


def _n_phases(crops, heatmaps, phase_names, n_phases):
    """The number of phases: given, else one per heatmap where there are several, else one per
    phase name, else one per channel of the crops."""
    if n_phases is not None:
        return int(n_phases)
    if heatmaps.ndim == 3 and len(heatmaps) > 1:
        return len(heatmaps)
    if phase_names is not None:
        return len(phase_names)
    return len(crops)


def _check_arrays(crops, heatmaps, phase_names, n_phases=None):
    """The centre slice of each phase, the heatmaps broadcast to them, and the panel titles."""
    crops = np.asarray(crops, dtype=np.float64)
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if crops.ndim != 3:
        raise ValueError(
            f"crops must have shape (n_phases, H, W) or, for 2.5D crops, (n_phases * n_slices, "
            f"H, W); got shape {crops.shape}"
        )
    n = _n_phases(crops, heatmaps, phase_names, n_phases)
    if n < 1 or len(crops) % n:
        raise ValueError(
            f"{len(crops)} crop channels cannot be split into {n} phases of equal numbers of slices"
        )
    depth = len(crops) // n
    # 2.5D crops: each phase's slices in a row, phase after phase; its centre slice is shown.
    crops = crops.reshape(n, depth, *crops.shape[1:])[:, depth // 2]
    if heatmaps.shape == crops.shape[1:] or heatmaps.shape == (1, *crops.shape[1:]):
        # one map for all phases (the multi-channel CNN looks at the stacked phases at once)
        heatmaps = np.broadcast_to(heatmaps.reshape(crops.shape[1:]), crops.shape)
    if heatmaps.shape != crops.shape:
        raise ValueError(
            f"heatmaps must have the crops' shape {crops.shape}, one map per phase (or "
            f"{crops.shape[1:]} for one map shared by all phases); got {heatmaps.shape}"
        )
    for what, array in (("crops", crops), ("heatmaps", heatmaps)):
        if not np.isfinite(array).all():
            raise ValueError(f"{what} hold a missing or infinite value")
    if phase_names is None:
        phase_names = ("AP", "PVP", "DP") if n == 3 else [f"phase {i}" for i in range(n)]
    phase_names = [str(p) for p in phase_names]
    if len(phase_names) != n:
        raise ValueError(f"{len(phase_names)} phase names for {n} phases")
    return crops, heatmaps, phase_names


def _unit_range(array):
    low, high = array.min(), array.max()
    return np.zeros_like(array) if high <= low else (array - low) / (high - low)


class GradCAMDisplay:
    """Grad-CAM heatmaps laid over the phase crops of one patient, one panel per phase.

    The CNN that computes the heatmaps is not needed here: give the crops (as the cropper
    produces them) and the heatmaps, already resized to the crops. Use :meth:`from_arrays`.
    For 2.5D crops (several slices per phase, phase after phase), each panel shows the centre
    slice of its phase, the largest-ROI slice.

    Parameters
    ----------
    crops : array-like of shape (n_phases, H, W) or (n_phases * n_slices, H, W)
        The patient's image crops: one per phase, or, for 2.5D crops, the ``n_slices`` slices of
        each phase in a row, phase after phase.
    heatmaps : array-like of shape (n_phases, H, W), (1, H, W) or (H, W)
        Grad-CAM maps over the crops, one per phase; one map is shared by all phases (as a
        multi-channel CNN gives).
    phase_names : sequence of str, default=None
        Panel titles; ``("AP", "PVP", "DP")`` for three phases.
    title : str, default=None
        Title of the figure, e.g. the patient id and the predicted probability.
    n_phases : int, default=None
        Number of phases in ``crops``; ``None``: the number of ``heatmaps`` if there are several,
        else of ``phase_names`` if given, else one phase per channel of ``crops``.

    Attributes
    ----------
    images_ : list of matplotlib AxesImage
        The crops, in grey.
    overlays_ : list of matplotlib AxesImage
        The heatmaps over them.
    colorbar_ : matplotlib Colorbar or None
        The heatmap colour bar, or ``None``.
    axes_ : ndarray of matplotlib Axes
        One axes per phase.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    RocCurveDisplay : The curves of the same models.

    References
    ----------
    .. [1] R. R. Selvaraju et al., "Grad-CAM: visual explanations from deep networks via
       gradient-based localization", ICCV 2017, 618-626.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.plotting import GradCAMDisplay
    >>> rng = np.random.default_rng(0)
    >>> crops = rng.normal(size=(3, 64, 64))
    >>> yy, xx = np.mgrid[:64, :64]
    >>> heatmap = np.exp(-((yy - 30) ** 2 + (xx - 34) ** 2) / 200)
    >>> display = GradCAMDisplay.from_arrays(crops, heatmap, title="P007: p = 0.81")
    >>> [ax.get_title() for ax in display.axes_]
    ['AP', 'PVP', 'DP']
    >>> len(display.overlays_)
    3
    """

    def __init__(self, *, crops, heatmaps, phase_names=None, title=None, n_phases=None):
        self.crops = crops
        self.heatmaps = heatmaps
        self.phase_names = phase_names
        self.title = title
        self.n_phases = n_phases

    def plot(self, ax=None, *, alpha=0.4, cmap="jet", normalize=True, colorbar=True):
        """Draw the panels.

        Parameters
        ----------
        ax : sequence of matplotlib Axes, default=None
            One axes per phase; a new figure with a row of panels when ``None``.
        alpha : float, default=0.4
            Opacity of the heatmaps.
        cmap : str or matplotlib Colormap, default="jet"
            Colour map of the heatmaps.
        normalize : bool, default=True
            Scale each panel's heatmap to [0, 1] (a constant map becomes 0), and each crop's
            grey levels to its own range.
        colorbar : bool, default=True
            Add a colour bar of the heatmap values.

        Returns
        -------
        display : GradCAMDisplay
            This object, with the artists stored.
        """
        import matplotlib.pyplot as plt

        crops, heatmaps, names = _check_arrays(
            self.crops, self.heatmaps, self.phase_names, self.n_phases
        )
        if ax is None:
            self.figure_, axes = plt.subplots(
                1, len(crops), figsize=(3 * len(crops), 3.3), squeeze=False
            )
            axes = axes[0]
        else:
            axes = np.ravel(np.asarray(ax, dtype=object))
            if len(axes) != len(crops):
                raise ValueError(f"ax holds {len(axes)} axes for {len(crops)} phases")
            self.figure_ = axes[0].figure
        self.axes_ = np.asarray(axes, dtype=object)
        self.images_, self.overlays_ = [], []
        for axis, crop, heatmap, name in zip(axes, crops, heatmaps, names, strict=True):
            grey = _unit_range(crop) if normalize else crop
            heat = _unit_range(heatmap) if normalize else heatmap
            self.images_.append(axis.imshow(grey, cmap="gray", interpolation="nearest"))
            self.overlays_.append(
                axis.imshow(
                    heat,
                    cmap=cmap,
                    alpha=alpha,
                    vmin=0 if normalize else None,
                    vmax=1 if normalize else None,
                    interpolation="bilinear",
                )
            )
            axis.set_title(name)
            axis.set_axis_off()
        self.colorbar_ = (
            self.figure_.colorbar(self.overlays_[-1], ax=list(axes), shrink=0.8)
            if colorbar
            else None
        )
        if self.title is not None:
            self.figure_.suptitle(self.title)
        return self

    @classmethod
    def from_arrays(
        cls,
        crops,
        heatmaps,
        *,
        phase_names=None,
        title=None,
        n_phases=None,
        ax=None,
        **plot_kwargs,
    ):
        """Draw Grad-CAM heatmaps over a patient's phase crops.

        Parameters
        ----------
        crops : array-like of shape (n_phases, H, W) or (n_phases * n_slices, H, W)
            The patient's image crops, one per phase, or 2.5D crops (each phase's slices in a
            row, phase after phase), of which each phase's centre slice is shown.
        heatmaps : array-like of shape (n_phases, H, W), (1, H, W) or (H, W)
            Grad-CAM maps over the crops, or one map shared by all phases.
        phase_names : sequence of str, default=None
            Panel titles; ``("AP", "PVP", "DP")`` for three phases.
        title : str, default=None
            Title of the figure.
        n_phases : int, default=None
            Number of phases in ``crops``; ``None``: the number of ``heatmaps`` if there are
            several, else of ``phase_names`` if given, else one per channel of ``crops``.
        ax : sequence of matplotlib Axes, default=None
            One axes per phase; a new figure when ``None``.
        **plot_kwargs : dict
            Passed to :meth:`plot` (``alpha``, ``cmap``, ``normalize``, ``colorbar``).

        Returns
        -------
        display : GradCAMDisplay
            The display, drawn.

        Raises
        ------
        ValueError
            If the shapes disagree, a value is not finite, or the phase names do not match.

        Examples
        --------
        >>> import numpy as np
        >>> from p53radiomics.plotting import GradCAMDisplay
        >>> crops = np.random.default_rng(0).normal(size=(2, 32, 32))
        >>> display = GradCAMDisplay.from_arrays(
        ...     crops, np.ones((2, 32, 32)), phase_names=["AP", "DP"], colorbar=False)
        >>> display.colorbar_ is None, display.overlays_[0].get_array().max()
        (True, np.float64(0.0))

        2.5D crops of two phases, three slices each: the centre slices (channels 1 and 4).

        >>> crops = np.arange(6.0)[:, None, None] * np.ones((6, 8, 8))
        >>> display = GradCAMDisplay.from_arrays(
        ...     crops, np.ones((2, 8, 8)), normalize=False, colorbar=False)
        >>> [float(image.get_array()[0, 0]) for image in display.images_]
        [1.0, 4.0]
        """
        _check_arrays(crops, heatmaps, phase_names, n_phases)
        display = cls(
            crops=crops,
            heatmaps=heatmaps,
            phase_names=phase_names,
            title=title,
            n_phases=n_phases,
        )
        return display.plot(ax=ax, **plot_kwargs)
