"""Clinical variables of the synthetic cohort, drawn to match the study's Tables 1 and 2.

The generative model, per patient:

1. P53 status ``y``: ``round(n * prevalence)`` mutated patients (the study's prevalence 183/320: 128 + 55
   mutated of 320) in random order, so that a cohort of any size keeps the study's class balance
   (a smaller demo cohort is the study's in miniature, not a Bernoulli draw that may stray from it).
2. LTD and rim-APHE depend on ``y`` directly, with the class-wise figures of Table 1 (the two cohorts
   pooled): LTD 36.1 ± 17.1 mm without and 48.1 ± 23.0 mm with the mutation (truncated to the study's
   10–100 mm inclusion range); rim-APHE in 9.5% and 33.3%. They are the only variables that carry
   information about ``y`` beyond each other, so they come out as the independent predictors of a
   multivariable logistic analysis, as in Table 2.
3. Edmondson-Steiner grade, MVI, AFP and capsule depend on ``y`` only *through* LTD and rim-APHE
   (larger, rim-enhancing tumours are less differentiated, more often invasive, secrete more AFP).
   They are therefore associated with ``y`` in univariable analysis and not in multivariable analysis,
   as Table 2 found. A consequence: grade's class gap (≈19% vs ≈33% grade III) is narrower than
   Table 1's (10% vs 43%), which no mediated model can reach; we keep Table 2's structure.
4. Age, gender, CEA, CA19-9, washout and delayed central enhancement are drawn per class from
   Table 1 (none of them was a predictor in Table 2).

Laboratory values are drawn as numbers whose categories (AFP < 20, 20–400, ≥ 400 ng/mL; CEA < 5 ng/mL;
CA19-9 < 37 U/mL) have the proportions of Table 1 (log-uniform within each category).
"""

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import truncnorm

#: P53 prevalence of the study (128 + 55 mutated of 320).
STUDY_PREVALENCE = 183 / 320

# Class-wise figures of Table 1, the two cohorts pooled: (P53-, P53+).
_AGE = ((59.32, 11.8), (57.45, 11.3))
_MALE = (107 / 137, 152 / 183)
_CA199_HIGH = (19 / 137, 19 / 183)
_CEA_HIGH = (10 / 137, 11 / 183)
_LTD = ((36.1, 17.1), (48.1, 23.0))
_RIM = (13 / 137, 61 / 183)
_WASHOUT = (  # nonperipheral, peripheral, none
    (109 / 137, 5 / 137, 23 / 137),
    (143 / 183, 7 / 183, 33 / 183),
)
_DCE = (13 / 137, 11 / 183)

# Mediated variables: logit = b0 + b_ltd * z(LTD) + b_rim * rim, z(LTD) = (LTD - 43) / 21.
_GRADE3 = (-1.35, 0.9, 1.0)
_MVI = (-0.65, 0.35, 0.45)
_CAPSULE = (2.35, 0.2, 0.3)
_AFP_LATENT = (0.55, 0.6)  # b_ltd, b_rim of a logistic latent; categories cut at its quantiles
_AFP_CUTS = (0.3, 1.6)  # latent cut points giving about 51%, 27%, 22% in the three AFP categories

WASHOUT_LEVELS = ("nonperipheral", "peripheral", "none")


def _log_uniform(rng, low, high, size):
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _by_class(rng, y, p):
    """Bernoulli draws with probability p[y]."""
    return (rng.random(y.size) < np.where(y == 1, p[1], p[0])).astype(int)


def draw_clinical(n_patients, rng, prevalence=STUDY_PREVALENCE):
    """Draw the clinical table and labels of a synthetic cohort.

    Parameters
    ----------
    n_patients : int
        Number of patients.
    rng : numpy.random.Generator
        Source of randomness.
    prevalence : float, default=183/320
        Share of P53-mutated patients: ``round(n_patients * prevalence)`` of them, in random order.

    Returns
    -------
    clinical : pandas.DataFrame
        Columns ``age, gender, afp, cea, ca199, edmondson_grade, mvi, ltd, rim_aphe, washout,
        delayed_central_enhancement, capsule``.
    y : numpy.ndarray of int
        1 = P53-mutated.
    """
    y = np.zeros(n_patients, dtype=int)
    y[rng.permutation(n_patients)[: round(n_patients * prevalence)]] = 1
    pick = lambda pair: np.where(y == 1, pair[1], pair[0])  # noqa: E731

    age_mean, age_sd = pick((_AGE[0][0], _AGE[1][0])), pick((_AGE[0][1], _AGE[1][1]))
    age = np.clip(np.round(rng.normal(age_mean, age_sd)), 18, 90).astype(int)
    gender = np.where(_by_class(rng, y, _MALE) == 1, "male", "female")

    ltd_mean, ltd_sd = pick((_LTD[0][0], _LTD[1][0])), pick((_LTD[0][1], _LTD[1][1]))
    a, b = (10.0 - ltd_mean) / ltd_sd, (100.0 - ltd_mean) / ltd_sd
    ltd = np.round(truncnorm.rvs(a, b, loc=ltd_mean, scale=ltd_sd, random_state=rng), 1)
    rim = _by_class(rng, y, _RIM)

    z_ltd = (ltd - 43.0) / 21.0

    def mediated(coef):
        b0, b_ltd, b_rim = coef
        return (rng.random(n_patients) < expit(b0 + b_ltd * z_ltd + b_rim * rim)).astype(int)

    grade = np.where(mediated(_GRADE3) == 1, 3, 2)
    mvi = mediated(_MVI)
    capsule = mediated(_CAPSULE)
    latent = _AFP_LATENT[0] * z_ltd + _AFP_LATENT[1] * rim + rng.logistic(size=n_patients)
    afp_cat = np.digitize(latent, _AFP_CUTS)
    afp = np.select(
        [afp_cat == 0, afp_cat == 1],
        [_log_uniform(rng, 1.0, 20.0, n_patients), _log_uniform(rng, 20.0, 400.0, n_patients)],
        _log_uniform(rng, 400.0, 60000.0, n_patients),
    )

    cea = np.where(
        _by_class(rng, y, _CEA_HIGH) == 1,
        _log_uniform(rng, 5.0, 50.0, n_patients),
        rng.uniform(0.5, 5.0, n_patients),
    )
    ca199 = np.where(
        _by_class(rng, y, _CA199_HIGH) == 1,
        _log_uniform(rng, 37.0, 1000.0, n_patients),
        rng.uniform(1.0, 37.0, n_patients),
    )
    u = rng.random(n_patients)
    p_non, p_per = pick((_WASHOUT[0][0], _WASHOUT[1][0])), pick((_WASHOUT[0][1], _WASHOUT[1][1]))
    washout = np.select([u < p_non, u < p_non + p_per], list(WASHOUT_LEVELS[:2]), WASHOUT_LEVELS[2])
    dce = _by_class(rng, y, _DCE)

    clinical = pd.DataFrame(
        {
            "age": age,
            "gender": gender,
            "afp": np.round(afp, 1),
            "cea": np.round(cea, 2),
            "ca199": np.round(ca199, 1),
            "edmondson_grade": grade,
            "mvi": mvi,
            "ltd": ltd,
            "rim_aphe": rim,
            "washout": washout,
            "delayed_central_enhancement": dce,
            "capsule": capsule,
        }
    )
    return clinical, y
