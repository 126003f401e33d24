"""The settings of a run of the study (:class:`Profile`, :data:`PROFILES`) and its pipeline."""

from dataclasses import dataclass, field
from pathlib import Path

from .._settings import STUDY_CV, STUDY_N4_ITERATIONS, STUDY_SPACING
from ..io import DEFAULT_PHASES
from ..pipeline import DEEP_BRANCH_DEFAULTS

__all__ = [
    "PREOPERATIVE_COLUMNS",
    "PROFILES",
    "Profile",
    "deep_settings",
    "lasso_candidates",
    "profile_pipeline",
    "resolve_profile",
]

#: Candidate predictors of the clinical model: what is known before surgery (grade and MVI are
#: pathological findings, in Table 2 but not in a preoperative model).
PREOPERATIVE_COLUMNS = (
    "age", "gender", "afp", "cea", "ca199", "ltd", "rim_aphe", "washout", "delayed_central_enhancement", "capsule",
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """Settings of a run of the study.

    Attributes
    ----------
    name : str
        ``"quick"`` or ``"full"``.
    backbones : tuple of str
        CNN backbones compared (Tables 3 and 4).
    modes : tuple of str
        Fusion modes compared.
    final_backbone, final_mode : str
        The deep model of the combined model, fixed beforehand (the study's finding), not chosen on
        the validation cohort, which would leak it into the model.
    crop_size, max_epochs, batch_size, n_components : int
        CNN settings.
    spacing : tuple of float
        Resampled voxel spacing (mm).
    n_iterations : tuple of int
        N4 iterations per level.
    radiomics : str
        ``"study"`` (the 1,223-feature set per phase) or ``"original"`` (original image only).
    cv : int
        Folds of the stacking and of the LASSO steps.
    lasso_Cs : int or None
        Candidate penalties of each LASSO step (:class:`~p53radiomics.LassoSelector`'s ``Cs``);
        ``None`` keeps the selector's default.
    n_gradcam : int
        Validation patients shown in Grad-CAM panels.
    """

    name: str
    backbones: tuple
    modes: tuple = ("mc", "ff")
    # the deep settings default to the study's, defined once in p53radiomics.pipeline
    final_backbone: str = DEEP_BRANCH_DEFAULTS["backbone"]
    final_mode: str = DEEP_BRANCH_DEFAULTS["mode"]
    crop_size: int = DEEP_BRANCH_DEFAULTS["crop_size"]
    max_epochs: int = DEEP_BRANCH_DEFAULTS["max_epochs"]
    batch_size: int = DEEP_BRANCH_DEFAULTS["batch_size"]
    n_components: int = DEEP_BRANCH_DEFAULTS["n_components"]
    # the preprocessing and the folds default to the study's, defined once in p53radiomics._settings
    spacing: tuple = STUDY_SPACING
    n_iterations: tuple = STUDY_N4_ITERATIONS
    radiomics: str = "study"
    cv: int = STUDY_CV
    lasso_Cs: int | None = None
    n_gradcam: int = 4
    notes: tuple = field(default=())


PROFILES = {
    "quick": Profile(
        "quick",
        backbones=("resnet18",),
        final_backbone="resnet18",
        crop_size=48,
        max_epochs=3,
        batch_size=32,
        spacing=(2.0, 2.0, 2.0),
        n_iterations=(20, 20),
        radiomics="original",
        cv=3,
        n_gradcam=3,
        notes=(
            "one backbone (ResNet18) instead of six, in both fusion modes",
            "48-pixel crops instead of 256, 3 epochs, no pretrained weights",
            "2-mm resampling instead of 1 mm; N4 with 2 fitting levels of 20 iterations instead of 4 of 50",
            "radiomics on the original image only (about 107 features per phase instead of 1,223)",
            "3-fold stacking and LASSO instead of 5",
        ),
    ),
    "smoke": Profile(
        "smoke",
        backbones=("resnet18",),
        final_backbone="resnet18",
        crop_size=32,
        max_epochs=1,
        batch_size=16,
        n_components=2,
        spacing=(2.0, 2.0, 2.0),
        n_iterations=(5, 5),
        radiomics="original",
        cv=2,
        lasso_Cs=5,
        n_gradcam=1,
        notes=("a smoke test of the command line, in seconds: its figures mean nothing",),
    ),
    "full": Profile(
        "full",
        backbones=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121"),
        notes=(
            "the study's settings: six backbones, 256-pixel crops, 1-mm voxels, the full radiomics set",
        ),
    ),
}


def resolve_profile(profile):
    """A :class:`Profile` from itself or its name in :data:`PROFILES`."""
    return PROFILES[profile] if isinstance(profile, str) else profile


def deep_settings(profile, *, backbone=None, mode=None):
    """A profile's deep-branch settings, as :func:`~p53radiomics.pipeline.make_deep_branch` and
    :func:`~p53radiomics.make_paper_pipeline` take them; ``None`` takes the profile's final
    backbone and mode."""
    return {
        "backbone": backbone or profile.final_backbone,
        "mode": mode or profile.final_mode,
        "n_components": profile.n_components,
        "crop_size": profile.crop_size,
        "max_epochs": profile.max_epochs,
        "batch_size": profile.batch_size,
    }


def lasso_candidates(model, profile):
    """`model` with the profile's ``lasso_Cs`` set on each of its LASSO steps (every ``select``
    step's ``Cs``); unchanged where the profile keeps the selector's default.

    Examples
    --------
    >>> from p53radiomics.pipeline import make_deep_branch
    >>> from p53radiomics.study import PROFILES
    >>> from p53radiomics.study._profiles import lasso_candidates
    >>> branch = lasso_candidates(make_deep_branch(), PROFILES["smoke"])
    >>> branch.get_params()["select__Cs"]
    5
    """
    profile = resolve_profile(profile)
    if profile.lasso_Cs is None:
        return model
    names = [name for name in model.get_params() if name.split("__")[-2:] == ["select", "Cs"]]
    return model.set_params(**dict.fromkeys(names, profile.lasso_Cs))


def _radiomics_params(profile):
    if profile.radiomics == "study":
        return None
    from ..radiomics import load_params

    params = load_params(None)
    params["imageType"] = {"Original": {}}
    return params


def profile_pipeline(
    profile,
    clinical_columns,
    *,
    phases=DEFAULT_PHASES,
    cache_dir=None,
    n_jobs=None,
    random_state=0,
    backbone=None,
    mode=None,
    harmonize=False,
    context_slices=0,
    robustness_threshold=None,
):
    """The study's pipeline (:func:`~p53radiomics.make_paper_pipeline`) with a profile's settings.

    Parameters
    ----------
    profile : {"quick", "full", "smoke"} or Profile
        Settings (:data:`PROFILES`).
    clinical_columns : list of str
        Candidate clinical predictors.
    phases : sequence of str
        Phases used.
    cache_dir : str, os.PathLike or None
        Per-case cache; stored absolute, since the fitted model remembers it.
    n_jobs : int or None
        Cases preprocessed and extracted in parallel.
    random_state : int
        Seeds every model.
    backbone, mode : str or None
        The CNN; ``None`` takes the profile's final model.
    harmonize : bool
        ComBat harmonisation across the ``scanner`` column in the radiomics branch.
    context_slices : int
        2.5D crops for the CNN: the slices above and below each phase's largest slice.
    robustness_threshold : float or None
        The radiomics branch's robustness filter: keep the features whose ICC over the training
        patients' repeated (else perturbed) ROIs reaches it, e.g. 0.75; ``None`` keeps them all.

    Returns
    -------
    pipeline : Pipeline
        Unfitted.

    Examples
    --------
    >>> from p53radiomics.study import profile_pipeline
    >>> model = profile_pipeline("smoke", ["ltd", "rim_aphe"], mode="mc")
    >>> params = model.get_params()
    >>> params["fusion__deep__cnn__backbone"], params["fusion__deep__cnn__mode"]
    ('resnet18', 'mc')
    >>> params["fusion__deep__crop__size"], params["preprocess__n_iterations"]
    (32, (5, 5))
    """
    from ..pipeline import make_paper_pipeline

    profile = resolve_profile(profile)
    model = make_paper_pipeline(
        list(clinical_columns),
        phases=phases,
        cache_dir=None if cache_dir is None else str(Path(cache_dir).resolve()),
        **deep_settings(profile, backbone=backbone, mode=mode),
        radiomics_params=_radiomics_params(profile),
        spacing=profile.spacing,
        cv=profile.cv,
        n_jobs=n_jobs,
        random_state=random_state,
        verbose=1,
        harmonize=harmonize,
        context_slices=context_slices,
        robustness_threshold=robustness_threshold,
    )
    return lasso_candidates(model, profile).set_params(
        preprocess__n_iterations=profile.n_iterations
    )
