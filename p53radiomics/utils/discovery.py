"""Find the estimators and functions that p53radiomics exports (in the manner of
:func:`sklearn.utils.discovery.all_estimators`), so that the common tests check every one."""

import importlib
import inspect
import pkgutil

from sklearn.base import BaseEstimator

__all__ = ["all_estimators"]


def all_estimators():
    """Every public estimator class defined in p53radiomics.

    Walks the package's modules (private modules included, since public classes live in them and
    are re-exported) and keeps the classes that subclass :class:`sklearn.base.BaseEstimator`, are
    defined in p53radiomics, and whose names do not start with an underscore.

    Returns
    -------
    estimators : list of (str, type)
        ``(name, class)`` pairs sorted by name.

    Examples
    --------
    >>> from p53radiomics.utils.discovery import all_estimators
    >>> all(isinstance(name, str) for name, _ in all_estimators())
    True
    """
    import p53radiomics

    found = {}
    for info in pkgutil.walk_packages(p53radiomics.__path__, prefix="p53radiomics."):
        if ".tests" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseEstimator)
                and cls.__module__.startswith("p53radiomics.")
                and not name.startswith("_")
                and not inspect.isabstract(cls)
            ):
                found[name] = cls
    return sorted(found.items())
