"""The study package's own pieces, without running the study (tests/test_cli.py runs it)."""

import pandas as pd
import pytest

from p53radiomics.pipeline import DEEP_BRANCH_DEFAULTS
from p53radiomics.study import PROFILES, StudyResult, profile_pipeline


def test_the_full_profile_is_the_study_deep_model():
    full = PROFILES["full"]
    assert (full.final_backbone, full.final_mode) == (
        DEEP_BRANCH_DEFAULTS["backbone"],
        DEEP_BRANCH_DEFAULTS["mode"],
    )
    params = profile_pipeline("full", ["ltd"]).get_params()
    for name in ("backbone", "mode", "n_components", "max_epochs", "batch_size"):
        assert params[f"fusion__deep__cnn__{name}"] == DEEP_BRANCH_DEFAULTS[name], name
    assert params["fusion__deep__crop__size"] == DEEP_BRANCH_DEFAULTS["crop_size"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_reaches_the_deep_branch(name):
    profile = PROFILES[name]
    params = profile_pipeline(name, ["ltd"], backbone="resnet34").get_params()
    assert params["fusion__deep__cnn__backbone"] == "resnet34"
    assert params["fusion__deep__cnn__mode"] == profile.final_mode
    assert params["fusion__deep__cnn__n_components"] == profile.n_components
    assert params["fusion__deep__crop__size"] == profile.crop_size
    assert params["fusion__deep__cnn__max_epochs"] == profile.max_epochs
    assert params["fusion__deep__cnn__batch_size"] == profile.batch_size


def test_study_result_reads_as_the_dict_run_study_returned():
    table5 = pd.DataFrame({"model": ["Combined model"]})
    skipped = pd.DataFrame(columns=["column", "reason"])
    result = StudyResult({"table1": None, "table5": table5}, "MODEL", {"total": 1.0}, skipped)
    assert list(result) == ["table1", "table5", "model", "timings", "skipped"]
    assert result["table5"] is table5 and result["model"] == "MODEL"
    assert result.get("table3") is None and "timings" in result and len(result) == 5
    assert dict(result) == {**{"table1": None, "table5": table5}, "model": "MODEL",
                            "timings": {"total": 1.0}, "skipped": skipped}  # fmt: skip
    assert result.tables["table5"] is table5 and result.figures == {}
    with pytest.raises(KeyError):
        result["figures"]
