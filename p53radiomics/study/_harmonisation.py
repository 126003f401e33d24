"""The effect of ComBat harmonisation on the radiomics model, in the validation and the external
cohorts (:func:`harmonisation_effect`): the study's ``harmonisation_effect`` table and report
section, and what ``benchmarks/bench_external.py`` measures."""

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from ..exceptions import UnseenBatchWarning
from ..harmonization import ComBatHarmonizer, adapt_to_new_batches, between_batch_share

__all__ = [
    "HarmonisationEffect",
    "harmonisation_effect",
    "harmonisation_stage",
    "with_harmonisation",
    "without_harmonisation",
]

#: The rows of the table: no harmonisation, ComBat (the external scanners on the training
#: scanners' pooled estimates), ComBat adapted to the external scanners.
NONE, POOLED, ADAPTED = (
    "no harmonisation",
    "ComBat, pooled estimates for the external scanners",
    "ComBat adapted to the external scanners",
)


@dataclass
class HarmonisationEffect:
    """What :func:`harmonisation_effect` measured.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per setting (no harmonisation; ComBat with pooled estimates for the external
        scanners; ComBat adapted to them), for each cohort ``c``: ``f"{c} AUC"``, ``f"{c} AUC
        low"``, ``f"{c} AUC high"``, ``f"{c} AUC (95% CI)"`` (DeLong), ``f"{c} between-scanner
        share"`` and ``f"{c} between-scanner share by chance"`` (see
        :func:`harmonisation_effect`'s Notes); ``attrs["note"]`` says how many patients per
        scanner adapted it.
    branches : dict of str to Pipeline
        The fitted radiomics branch of each row (the adapted row's shares every fitted step of
        the ComBat row but its harmoniser).
    scores : dict of str to dict of str to numpy.ndarray
        By row and cohort, the branch's probability of P53 mutation.
    features : dict of str to pandas.DataFrame
        By cohort, the raw features with the batch column (the ComBat branch's ``extract``).
    """

    table: pd.DataFrame
    branches: dict
    scores: dict
    features: dict = field(default_factory=dict)


def without_harmonisation(branch):
    """An unfitted copy of a radiomics branch (:func:`~p53radiomics.pipeline.make_radiomics_branch`)
    without its ``harmonize`` step, where it has one, its settings otherwise unchanged."""
    harmonizer = dict(branch.steps).get("harmonize")
    steps = [(name, clone(step)) for name, step in branch.steps if name != "harmonize"]
    if harmonizer is not None and not isinstance(harmonizer, str):
        extract = steps[0][1]
        kept = tuple(c for c in extract.passthrough if c != harmonizer.batch_column)
        extract.set_params(passthrough=kept)
    return Pipeline(steps)


def with_harmonisation(branch, batch_column="scanner"):
    """An unfitted copy of a radiomics branch with a ComBat step
    (:class:`~p53radiomics.ComBatHarmonizer` on `batch_column`) after ``extract``, its settings
    otherwise unchanged: what ``make_radiomics_branch(..., harmonize=True)`` builds."""
    steps = without_harmonisation(branch).steps
    name, extract = steps[0]
    if name != "extract":
        raise ValueError(f"the radiomics branch's first step must be 'extract', got {name!r}")
    if batch_column not in extract.passthrough:
        extract.set_params(passthrough=(*extract.passthrough, batch_column))
    return Pipeline([steps[0], ("harmonize", ComBatHarmonizer(batch_column)), *steps[1:]])


def _with_harmonizer(branch, harmonizer):
    """The fitted branch with its ``harmonize`` step replaced (the other fitted steps shared)."""
    return Pipeline([(n, harmonizer if n == "harmonize" else s) for n, s in branch.steps])


def _adapted(branch, features, batch_column):
    """The ComBat branch adapted to the external scanners without estimates that have two
    patients or more, and the note saying on which; ``(None, note)`` where there are none."""
    harmonizer = branch.named_steps["harmonize"]
    scanner = features[batch_column]
    new = ~scanner.isin(harmonizer.batches_)
    counts = scanner[new].value_counts().sort_index()
    use = new & scanner.map(counts).ge(2).to_numpy()
    if not use.any():
        return None, (f"No external scanner without estimates has 2 patients or more "
                      f"(patients per new scanner: {counts.to_dict()}): no adapted row.")  # fmt: skip
    adapted = adapt_to_new_batches(harmonizer, features[use])
    used = counts[counts >= 2]
    note = (f"Adapted to the external scanners from the features of {int(used.sum())} external "
            f"patients ({', '.join(f'{k}: {v}' for k, v in used.items())}), no label.")  # fmt: skip
    return _with_harmonizer(branch, adapted), note


def _share(features, scanner):
    """Median between-scanner share over the features that vary; NaN with fewer than 2 scanners."""
    if pd.Series(scanner).nunique() < 2:
        return np.nan
    return float(between_batch_share(features, scanner).median())


def _chance(scanner):
    """The between-scanner share expected without any scanner effect: (k - 1) / (n - 1)."""
    k, n = pd.Series(scanner).nunique(), len(scanner)
    return (k - 1) / (n - 1) if k > 1 else np.nan


def harmonisation_effect(branch, Xp_train, y_train, cohorts, *, external, batch_column="scanner"):
    r"""The radiomics model without ComBat, with ComBat, and with ComBat adapted to an external
    cohort's scanners: AUC and between-scanner share of the features in each cohort.

    Parameters
    ----------
    branch : Pipeline
        A radiomics branch (:func:`~p53radiomics.pipeline.make_radiomics_branch`, fitted or
        not): its settings are copied (:func:`without_harmonisation`, :func:`with_harmonisation`)
        and both copies fitted on `Xp_train`. Its extraction cache serves every extraction.
    Xp_train : pandas.DataFrame
        The preprocessed training cohort (``N4Resampler``'s output), holding `batch_column`.
    y_train : array-like of shape (n_patients,)
        Its labels, 1 = P53-mutated.
    cohorts : dict of str to (pandas.DataFrame, array-like)
        The preprocessed cohorts to score and their labels, e.g. ``{"VC": ..., "EV": ...}``.
    external : str
        The key of `cohorts` whose scanners the third row adapts to (from its features only).
    batch_column : str, default="scanner"
        The cohort column naming each patient's scanner.

    Returns
    -------
    effect : HarmonisationEffect
        The table (see :class:`HarmonisationEffect`), the fitted branches, their scores and the
        raw features.

    Notes
    -----
    Rows: the branch without harmonisation; with ComBat fitted on the training patients (a
    scanner unseen there, as every external one, gets the training scanners' pooled estimates);
    with that ComBat adapted (:func:`~p53radiomics.harmonization.adapt_to_new_batches`) to the
    scanners of `external` without estimates that have 2 patients or more, from their features,
    never their labels: a transductive evaluation, since the same patients are then scored.
    The adapted row's other cohorts are harmonised as in the ComBat row.

    The **between-scanner share** of a cohort is the median, over the radiomics features that
    vary in it, of the share of a feature's variance over the cohort's patients that lies between
    their scanners (:func:`~p53radiomics.harmonization.between_batch_share`: for scanners
    :math:`k` of :math:`n_k` patients with means :math:`m_k`, grand mean :math:`m`,
    :math:`\eta^2 = \sum_k n_k (m_k - m)^2 / \sum_i (x_i - m)^2`), computed on
    the features the branch's ``scale`` step receives: raw without harmonisation, harmonised
    with it. It is not 0 without any scanner effect: for normal values it is then
    :math:`(k - 1) / (n - 1)` on average over :math:`k` scanners and :math:`n` patients, the
    ``by chance`` column (0.35 for 18 patients on 7 scanners). The pooled estimates apply one
    affine map to every unseen scanner, which leaves their share as it was raw. NaN in a cohort
    with a single scanner (``attrs["note"]`` says so).

    Examples
    --------
    A development cohort on two scanners and an external one on the three external scanners,
    2 patients each; four first-order features per phase:

    >>> import tempfile
    >>> from p53radiomics import N4Resampler
    >>> from p53radiomics.datasets import EXTERNAL_SCANNERS, make_synthetic_cohort
    >>> from p53radiomics.pipeline import make_radiomics_branch
    >>> from p53radiomics.study import harmonisation_effect
    >>> folder = tempfile.mkdtemp()
    >>> X, y = make_synthetic_cohort(f"{folder}/dev", n_patients=16, n_scanners=2,
    ...                              voxel_scale=3.0, random_state=0)
    >>> X_ev, y_ev = make_synthetic_cohort(f"{folder}/ev", n_patients=6, scanners=EXTERNAL_SCANNERS,
    ...                                    voxel_scale=3.0, random_state=1)
    >>> n4 = N4Resampler(spacing=(2.0, 2.0, 2.0), n_iterations=(5, 5))
    >>> Xp, Xp_ev = n4.transform(X), n4.transform(X_ev)
    >>> params = {"imageType": {"Original": {}}, "setting": {"binCount": 16, "label": 1},
    ...           "featureClass": {"firstorder": ["Mean", "Median", "Entropy", "Skewness"]}}
    >>> branch = make_radiomics_branch(params=params, cv=2, cache_dir=f"{folder}/cache")
    >>> effect = harmonisation_effect(branch, Xp, y, {"EV": (Xp_ev, y_ev)}, external="EV")
    >>> for row in effect.table.index:
    ...     print(row)
    no harmonisation
    ComBat, pooled estimates for the external scanners
    ComBat adapted to the external scanners

    The pooled estimates leave the external scanners' share as it was raw; adapting ComBat to
    their features brings it below chance ((3 - 1) / (6 - 1) = 0.4):

    >>> effect.table["EV between-scanner share"].round(2).tolist()
    [0.37, 0.37, 0.1]
    >>> effect.table["EV between-scanner share by chance"].round(2).tolist()
    [0.4, 0.4, 0.4]
    >>> print(effect.table.attrs["note"])
    Adapted to the external scanners from the features of 6 external patients
    (E1: 2, E2: 2, E3: 2), no label.
    """
    from ..metrics import roc_auc_ci

    with warnings.catch_warnings():  # TC scanners with one patient, unseen scanners: expected
        warnings.simplefilter("ignore", UnseenBatchWarning)
        plain = without_harmonisation(branch).fit(Xp_train, y_train)
        combat = with_harmonisation(branch, batch_column).fit(Xp_train, y_train)
        features = {
            c: combat.named_steps["extract"].transform(Xp) for c, (Xp, _) in cohorts.items()
        }
        adapted, note = _adapted(combat, features[external], batch_column)
        branches = {NONE: plain, POOLED: combat, **({ADAPTED: adapted} if adapted else {})}
        rows, scores = [], {}
        for row, model in branches.items():
            scores[row], values = {}, {}
            for cohort, (Xp, y) in cohorts.items():
                raw = features[cohort].drop(columns=batch_column)
                scanner = features[cohort][batch_column]
                # what the branch's scale step receives: raw, or harmonised (an array)
                seen = raw if row == NONE else pd.DataFrame(
                    model.named_steps["harmonize"].transform(features[cohort]), index=raw.index,
                    columns=raw.columns)  # fmt: skip
                scores[row][cohort] = model.predict_proba(Xp)[:, 1]
                auc, low, high = roc_auc_ci(np.asarray(y), scores[row][cohort])
                values.update({f"{cohort} AUC": auc, f"{cohort} AUC low": low,
                               f"{cohort} AUC high": high,
                               f"{cohort} AUC (95% CI)": f"{auc:.3f} ({low:.3f}-{high:.3f})",
                               f"{cohort} between-scanner share": _share(seen, scanner),
                               f"{cohort} between-scanner share by chance": _chance(scanner)})  # fmt: skip
            rows.append(values)
    table = pd.DataFrame(rows, index=pd.Index(list(branches), name="harmonisation"))
    single = [c for c in cohorts if features[c][batch_column].nunique() < 2]
    if single:
        note += f" Between-scanner share not defined (a single scanner) in: {', '.join(single)}."
    table.attrs["note"] = note
    return HarmonisationEffect(table, branches, scores, features)


def harmonisation_stage(
    model, Xp_tc, y_tc, cohorts, clock, *, external="EV", batch_column="scanner"
):
    """The study's stage ``harmonisation effect``: :func:`harmonisation_effect` of the fitted
    combined `model`'s radiomics branch, as ``{"harmonisation_effect": table}``; ``{}`` (and a
    line saying why) for a model without a radiomics branch or cohorts without `batch_column`."""
    from ..pipeline import fitted_branch

    branch = fitted_branch(model, "radiomics")
    missing = [c for c, (Xp, _) in {"TC": (Xp_tc, y_tc), **cohorts}.items()
               if batch_column not in Xp.columns]  # fmt: skip
    if isinstance(branch, str) or missing:
        why = "no radiomics model" if isinstance(branch, str) else (
            f"no {batch_column!r} column in {', '.join(missing)}")  # fmt: skip
        clock.log(f"no harmonisation table: {why}")
        return {}
    clock.log("the radiomics model without and with ComBat harmonisation (cached features)")
    with clock.stage("harmonisation effect", "harmonisation"):
        effect = harmonisation_effect(branch, Xp_tc, y_tc, cohorts, external=external,
                                      batch_column=batch_column)  # fmt: skip
    return {"harmonisation_effect": effect.table}
