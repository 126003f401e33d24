"""The profiles' settings reach the pipeline they build."""

import pytest

from p53radiomics.feature_selection import LassoSelector
from p53radiomics.study import PROFILES, profile_pipeline

SELECT_CS = (
    "fusion__clinical__select__Cs",
    "fusion__radiomics__select__Cs",
    "fusion__deep__select__Cs",
)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_lasso_step_takes_the_profiles_candidates(name):
    params = profile_pipeline(name, ["ltd", "rim_aphe"]).get_params()
    expected = PROFILES[name].lasso_Cs or LassoSelector().Cs
    assert {params[key] for key in SELECT_CS} == {expected}
    assert params["preprocess__n_iterations"] == PROFILES[name].n_iterations


def test_the_smoke_profile_searches_fewer_penalties_than_the_study():
    assert PROFILES["smoke"].lasso_Cs < LassoSelector().Cs
    assert PROFILES["quick"].lasso_Cs is None and PROFILES["full"].lasso_Cs is None
