"""Every display builds on a non-interactive backend with the expected artists, data and labels."""

import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.svm import LinearSVC

from p53radiomics.metrics import delong_test, net_benefit, roc_auc_ci
from p53radiomics.plotting import (
    CalibrationDisplay,
    DecisionCurveDisplay,
    GradCAMDisplay,
    NomogramDisplay,
    RocCurveDisplay,
)

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("plotting.test_displays")


@pytest.fixture(autouse=True)
def _agg_backend():
    # A non-interactive backend, and no figure left open from one test to the next.
    matplotlib.use("Agg")
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cohort():
    """Labels and three scores of 120 patients, as probabilities."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    scores = {
        "clinical": expit(y + rng.normal(0, 1.2, 120) - 0.5),
        "radiomics": expit(0.3 * y + rng.normal(0, 1, 120)),
        "combined": expit(2 * y + rng.normal(0, 1, 120) - 1),
    }
    return y, scores


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "ltd": rng.uniform(10, 150, 200),
            "rim_aphe": rng.integers(0, 2, 200),
            "afp": rng.normal(3, 1, 200),
        }
    )
    logit = -2 + 0.02 * X["ltd"] + 1.3 * X["rim_aphe"] - 0.3 * X["afp"]
    y = (rng.uniform(size=200) < expit(logit)).astype(int)
    return X, y


def test_importing_plotting_does_not_import_matplotlib():
    code = "import sys, p53radiomics.plotting; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------------------------------
# RocCurveDisplay
# --------------------------------------------------------------------------------------------------
def test_roc_display_single_curve(cohort):
    y, scores = cohort
    display = RocCurveDisplay.from_predictions(
        y, scores["combined"], name="Combined", n_bootstraps=100, random_state=0
    )
    auc, low, high = roc_auc_ci(y, scores["combined"])
    assert isinstance(display.line_, Line2D)
    assert display.line_.get_label() == f"Combined (AUC = {auc:.3f}, 95% CI {low:.3f}–{high:.3f})"
    assert isinstance(display.band_, PolyCollection)
    assert isinstance(display.chance_level_, Line2D)
    assert display.delong is None and display.delong_text_ is None
    assert display.ax_.get_xlabel().startswith("1 - Specificity")
    assert display.ax_.get_ylabel().startswith("Sensitivity")
    assert display.figure_ is display.ax_.figure
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend == [display.line_.get_label(), "Chance level (AUC = 0.5)"]
    # the band is drawn with the curve's colour
    np.testing.assert_allclose(
        display.band_.get_facecolor()[0][:3], matplotlib.colors.to_rgb(display.line_.get_color())
    )


def test_roc_display_several_curves_with_delong(cohort):
    y, scores = cohort
    display = RocCurveDisplay.from_predictions(
        y, scores, ci_method="bootstrap", n_bootstraps=100, random_state=0
    )
    assert [line.get_label().split(" (")[0] for line in display.line_] == list(scores)
    assert len(display.band_) == 3
    pairs = display.delong[["model_a", "model_b"]].values.tolist()
    assert pairs == [["clinical", "radiomics"], ["clinical", "combined"], ["radiomics", "combined"]]
    for row in display.delong.itertuples():
        assert (row.z, row.p_value) == delong_test(y, scores[row.model_a], scores[row.model_b])
    text = display.delong_text_.get_text()
    assert text.startswith("DeLong test")
    assert "clinical vs combined: p = " in text


def test_roc_display_options_and_reused_axes(cohort):
    y, scores = cohort
    fig, ax = plt.subplots()
    display = RocCurveDisplay.from_predictions(
        y,
        {"a": scores["clinical"], "b": scores["combined"]},
        band=False,
        ax=ax,
        plot_chance_level=False,
        show_delong=False,
        curve_kwargs=[{"color": "red"}, {"color": "blue", "label": "mine"}],
        despine=True,
    )
    assert display.ax_ is ax and display.figure_ is fig
    assert display.band_ is None and display.chance_level_ is None and display.delong_text_ is None
    assert display.delong is not None  # the tests are computed even when not written
    assert display.line_[0].get_color() == "red" and display.line_[1].get_label() == "mine"
    assert not ax.spines["top"].get_visible()


def test_roc_display_from_estimator(fitted):
    X, y = fitted
    models = {"logistic": LogisticRegression().fit(X, y), "svm": LinearSVC().fit(X, y)}
    display = RocCurveDisplay.from_estimator(models, X, y, band=False)
    svm_score = models["svm"].decision_function(X)
    assert display.roc_auc[1] == roc_auc_ci(y, svm_score)[0]
    single = RocCurveDisplay.from_estimator(models["logistic"], X, y, band=False)
    assert single.line_.get_label().startswith("LogisticRegression (AUC")
    # the positive class given by label: scores flip for the other class
    flipped = RocCurveDisplay.from_estimator(models["logistic"], X, y, pos_label=0, band=False)
    assert flipped.roc_auc == pytest.approx(single.roc_auc)
    assert "(Positive label: 0)" in flipped.ax_.get_xlabel()


def test_roc_display_with_string_labels():
    y = np.array(["Good", "Poor"] * 10)
    score = np.linspace(0, 1, 20) + np.tile([0, 0.3], 10)
    display = RocCurveDisplay.from_predictions(y, score, pos_label="Poor", band=False)
    assert display.roc_auc == roc_auc_ci(y, score, pos_label="Poor")[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "x"}, "name is taken from the keys"),
        ({"curve_kwargs": [{}]}, "curve_kwargs"),
        ({"ci_method": "wald"}, "method"),
    ],
)
def test_roc_display_errors(cohort, kwargs, match):
    y, scores = cohort
    with pytest.raises(ValueError, match=match):
        RocCurveDisplay.from_predictions(y, scores, band=False, **kwargs)


def test_display_errors_for_estimators(fitted):
    X, y = fitted
    with pytest.raises(ValueError, match="not a fitted classifier"):
        RocCurveDisplay.from_estimator(LogisticRegression(), X, y)
    with pytest.raises(ValueError, match="response_method"):
        RocCurveDisplay.from_estimator(
            LogisticRegression().fit(X, y), X, y, response_method="predict"
        )
    with pytest.raises(ValueError, match="predict_proba"):
        CalibrationDisplay.from_estimator(LinearSVC().fit(X, y), X, y)
    with pytest.raises(ValueError, match="binary"):
        RocCurveDisplay.from_estimator(LogisticRegression().fit(X, np.arange(200) % 3), X, y)


# --------------------------------------------------------------------------------------------------
# CalibrationDisplay
# --------------------------------------------------------------------------------------------------
def test_calibration_display(cohort):
    y, scores = cohort
    display = CalibrationDisplay.from_predictions(y, scores, n_bins=5, strategy="quantile")
    assert len(display.line_) == 3
    for line, (name, prob), true in zip(
        display.line_, scores.items(), display.prob_true, strict=True
    ):
        expected_true, expected_pred = calibration_curve(y, prob, n_bins=5, strategy="quantile")
        np.testing.assert_array_equal(line.get_xdata(), expected_pred)
        np.testing.assert_array_equal(true, expected_true)
        assert line.get_label().startswith(f"{name} (slope ")
        assert "Brier" in line.get_label()
    assert display.ref_line_.get_label() == "Perfectly calibrated"
    assert display.ax_.get_xlabel() == "Mean predicted probability"
    assert display.ax_.get_ylabel() == "Fraction of positives"


def test_calibration_display_from_estimator_and_errors(fitted):
    X, y = fitted
    display = CalibrationDisplay.from_estimator(
        LogisticRegression().fit(X, y), X, y, ref_line=False
    )
    assert display.ref_line_ is None
    assert isinstance(display.line_, Line2D)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CalibrationDisplay.from_predictions([0, 1, 0, 1], [0.1, 1.5, 0.2, 0.6])


# --------------------------------------------------------------------------------------------------
# DecisionCurveDisplay
# --------------------------------------------------------------------------------------------------
def test_decision_curve_display(cohort):
    y, scores = cohort
    thresholds = np.arange(1, 100) / 100
    display = DecisionCurveDisplay.from_predictions(y, scores, thresholds=thresholds, harm=0.01)
    for line, prob in zip(display.line_, scores.values(), strict=True):
        table = net_benefit(y, prob, thresholds, harm=0.01)
        np.testing.assert_array_equal(line.get_xdata(), thresholds)
        np.testing.assert_allclose(line.get_ydata(), table["net_benefit"])
    np.testing.assert_allclose(display.treat_all_.get_ydata(), table["treat_all"])
    assert display.treat_all_.get_label() == "Treat all"
    assert display.treat_none_.get_label() == "Treat none"
    assert list(display.treat_none_.get_ydata()) == [0, 0]
    low, high = display.ax_.get_ylim()
    assert low < 0 < y.mean() < high
    assert display.ax_.get_xlabel() == "Threshold probability"
    assert display.ax_.get_ylabel() == "Net benefit"


def test_decision_curve_display_from_estimator_and_options(fitted):
    X, y = fitted
    display = DecisionCurveDisplay.from_estimator(
        LogisticRegression().fit(X, y),
        X,
        y,
        plot_treat_all=False,
        plot_treat_none=False,
        ylim=(-0.1, 0.6),
    )
    assert display.treat_all_ is None and display.treat_none_ is None
    assert display.ax_.get_ylim() == (-0.1, 0.6)
    assert display.line_.get_label() == "LogisticRegression"


# --------------------------------------------------------------------------------------------------
# NomogramDisplay
# --------------------------------------------------------------------------------------------------
def _row_y(display, label):
    return display.rows_[label].get_ydata()[0]


def test_nomogram_points_give_the_model_probability(fitted):
    X, y = fitted
    model = LogisticRegression().fit(X, y)
    display = NomogramDisplay.from_estimator(model, X)
    np.testing.assert_allclose(display.coef, model.coef_.ravel(), rtol=1e-6)
    assert display.intercept == pytest.approx(model.intercept_[0], rel=1e-6)
    points = display.predict_points(X)
    np.testing.assert_allclose(
        display.points_to_probability(points), model.predict_proba(X)[:, 1], rtol=1e-6
    )
    assert list(display.rows_) == [
        "Points",
        "ltd",
        "rim_aphe",
        "afp",
        "Total points",
        "Probability",
    ]
    assert display.tick_labels_["rim_aphe"] == ["0", "1"]
    # the widest predictor spans the whole points scale, the others less
    assert max(np.ptp(line.get_xdata()) for line in display.rows_.values()) == pytest.approx(100)
    assert display.max_total_points_ == pytest.approx(
        sum(np.ptp(display.rows_[c].get_xdata()) for c in X.columns)
    )


def test_nomogram_probability_ticks_are_where_the_points_say(fitted):
    X, y = fitted
    model = LogisticRegression().fit(X, y)
    display = NomogramDisplay.from_estimator(model, X, probability_ticks=[0.25, 0.5, 0.75])
    y_prob = _row_y(display, "Probability")
    texts = {
        t.get_text(): t.get_position()[0]
        for t in display.ax_.texts
        if t.get_position()[1] == pytest.approx(y_prob + 0.18)
    }
    stretch = 100 / display.max_total_points_
    for label in display.tick_labels_["Probability"]:
        total = texts[label] / stretch
        assert display.points_to_probability(total) == pytest.approx(float(label), rel=1e-9)


def test_nomogram_of_a_scaled_pipeline_is_in_original_units(fitted):
    X, y = fitted
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X.to_numpy(), y)
    display = NomogramDisplay.from_estimator(
        pipe, X.to_numpy(), feature_names=["LTD", "rim-APHE", "AFP"]
    )
    scaler, lr = pipe[0], pipe[-1]
    np.testing.assert_allclose(display.coef, lr.coef_.ravel() / scaler.scale_, rtol=1e-6)
    assert "LTD" in display.rows_
    assert display.ax_.axison is False


def test_nomogram_errors(fitted):
    X, y = fitted
    curved = make_pipeline(StandardScaler(), PolynomialFeatures(2), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="not linear"):
        NomogramDisplay.from_estimator(curved, X)
    with pytest.raises(ValueError, match="same predictors"):
        NomogramDisplay(coef=[1.0, 2.0], intercept=0.0, feature_ticks=[[0, 1]]).plot()
    with pytest.raises(ValueError, match="nothing to draw"):
        NomogramDisplay(coef=[0.0], intercept=0.0, feature_ticks=[[0, 1]]).plot()
    display = NomogramDisplay(coef=[1.0], intercept=0.0, feature_ticks=[[0, 1]])
    with pytest.raises(ValueError, match="shape"):
        display.predict_points([[1, 2]])


def test_nomogram_unreachable_probability_ticks_fall_back_to_the_ends():
    display = NomogramDisplay(
        coef=[0.01], intercept=-6.0, feature_ticks=[[0, 10]], probability_ticks=[0.5]
    ).plot()
    assert len(display.tick_labels_["Probability"]) == 2


# --------------------------------------------------------------------------------------------------
# GradCAMDisplay
# --------------------------------------------------------------------------------------------------
def test_gradcam_display_panels():
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(3, 16, 16))
    heatmaps = rng.uniform(size=(3, 16, 16)) * 5
    display = GradCAMDisplay.from_arrays(crops, heatmaps, title="P001")
    assert [ax.get_title() for ax in display.axes_] == ["AP", "PVP", "DP"]
    assert len(display.images_) == len(display.overlays_) == 3
    for image, overlay, crop, heat in zip(
        display.images_, display.overlays_, crops, heatmaps, strict=True
    ):
        assert image.get_cmap().name == "gray"
        assert overlay.get_alpha() == 0.4
        np.testing.assert_allclose(overlay.get_array(), (heat - heat.min()) / np.ptp(heat))
        np.testing.assert_allclose(image.get_array(), (crop - crop.min()) / np.ptp(crop))
    assert display.colorbar_ is not None
    assert display.figure_._suptitle.get_text() == "P001"


def test_gradcam_display_shared_map_given_axes_and_raw_values():
    crops = np.zeros((2, 8, 8))
    heatmap = np.arange(64.0).reshape(8, 8)
    fig, axes = plt.subplots(2, 1)
    display = GradCAMDisplay.from_arrays(
        crops,
        heatmap,
        phase_names=["AP", "DP"],
        ax=axes,
        normalize=False,
        colorbar=False,
        alpha=0.7,
        cmap="viridis",
    )
    assert display.figure_ is fig
    assert display.colorbar_ is None
    for overlay in display.overlays_:
        np.testing.assert_array_equal(overlay.get_array(), heatmap)
        assert overlay.get_cmap().name == "viridis" and overlay.get_alpha() == 0.7


@pytest.mark.parametrize(
    "crops, heatmaps, kwargs, match",
    [
        (np.zeros((8, 8)), np.zeros((8, 8)), {}, "n_phases, H, W"),
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 7)), {}, "crops' shape"),
        (np.zeros((3, 8, 8)), np.full((3, 8, 8), np.nan), {}, "missing or infinite"),
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 8)), {"phase_names": ["AP"]}, "phase names"),
    ],
)
def test_gradcam_display_errors(crops, heatmaps, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradCAMDisplay.from_arrays(crops, heatmaps, **kwargs)


def test_gradcam_display_axes_count():
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="2 axes for 3 phases"):
        GradCAMDisplay.from_arrays(np.zeros((3, 8, 8)), np.zeros((8, 8)), ax=axes)
