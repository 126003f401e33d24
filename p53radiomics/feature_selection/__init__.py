"""Feature selection of the study: a correlation filter and LASSO."""

from ._correlation import CorrelationFilter
from ._lasso import LassoSelector

__all__ = ["CorrelationFilter", "LassoSelector"]
