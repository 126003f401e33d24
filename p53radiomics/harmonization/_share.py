"""How much of each feature's variance lies between batches (scanners): the measure a harmonisation
is meant to bring down."""

import numpy as np
import pandas as pd

from ..exceptions import CohortError

__all__ = ["between_batch_share"]


def between_batch_share(features, batch):
    """The share of each feature's variance that lies between batches (eta squared).

    For a feature :math:`x` over :math:`n` patients in batches :math:`k` of :math:`n_k` patients
    with means :math:`\\bar x_k` (grand mean :math:`\\bar x`), the between-batch share is the
    one-way ANOVA's

    .. math:: \\eta^2 = \\frac{\\sum_k n_k (\\bar x_k - \\bar x)^2}{\\sum_i (x_i - \\bar x)^2},

    from 0 (every batch has the same mean) to 1 (the feature is constant within each batch). A
    feature constant over the patients has no variance to share and is left out. An affine map
    of a feature (the same for every patient) leaves its share unchanged.

    Parameters
    ----------
    features : pandas.DataFrame or array-like of shape (n_patients, n_features)
        Numeric features, without the batch column. No missing value.
    batch : array-like of shape (n_patients,)
        Each patient's batch (e.g. the ``scanner`` column).

    Returns
    -------
    share : pandas.Series
        By feature (the column names of a DataFrame, else positions), the features that vary.

    Raises
    ------
    ValueError
        If the lengths differ, fewer than two batches are given, or (a
        :class:`~p53radiomics.CohortError` naming the patient and the column) a value is
        missing or not finite.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.harmonization import between_batch_share
    >>> features = pd.DataFrame({"a": [1.0, 2.0, 5.0, 6.0], "b": [1.0, 5.0, 2.0, 6.0],
    ...                          "c": [3.0, 3.0, 3.0, 3.0]})
    >>> between_batch_share(features, ["S1", "S1", "S2", "S2"]).round(3)
    a    0.941
    b    0.059
    dtype: float64
    """
    table = features if isinstance(features, pd.DataFrame) else pd.DataFrame(np.asarray(features))
    batch = np.asarray(batch, dtype=object)
    if len(batch) != len(table):
        raise ValueError(
            f"batch has {len(batch)} values for {len(table)} patients: one per patient"
        )
    levels, codes = np.unique(batch.astype(str), return_inverse=True)
    if len(levels) < 2:
        raise ValueError(f"at least two batches are needed, got {levels.tolist()}")
    values = table.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values).all():
        row, j = np.argwhere(~np.isfinite(values))[0]
        raise CohortError(
            f"{values[row, j]} is not a finite number", patient_id=table.index[row],
            column=table.columns[j],
        )  # fmt: skip
    centred = values - values.mean(axis=0)
    total = (centred**2).sum(axis=0)
    counts = np.bincount(codes)
    means = np.stack([centred[codes == k].mean(axis=0) for k in range(len(levels))])
    between = counts @ means**2
    vary = total > 1e-12 * np.maximum(1.0, (values**2).sum(axis=0))
    return pd.Series(between[vary] / total[vary], index=table.columns[vary], dtype=float)
