"""Checks for estimators whose input is a cohort table of images.

scikit-learn's :func:`~sklearn.utils.estimator_checks.check_estimator` feeds numeric arrays, which an
image-level step (one that reads an image file per cell) cannot take. :func:`check_image_estimator`
runs the part of scikit-learn's contract that still applies, on a cohort table the caller provides:

- ``clone`` gives an unfitted estimator with equal parameters; ``get_params``/``set_params`` round trip;
- ``fit`` returns ``self``, and a step that needs fitting raises ``NotFittedError`` before it;
- the input table, the in-memory images in it and the files and folders it names are left unchanged
  (nothing is written into an input folder);
- a fitted estimator pickled and loaded again gives the same output;
- fitting twice gives the same output (idempotent fit);
- two fits with the same ``random_state`` give the same output.

In the manner of imbalanced-learn's ``utils/estimator_checks.py``, which runs its own checks beside
scikit-learn's.
"""

import copy
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

__all__ = ["assert_same_output", "check_image_estimator"]

_OUTPUT_METHODS = ("transform", "predict_proba", "decision_function", "predict")


def _outputs(estimator, X):
    return {m: getattr(estimator, m)(X) for m in _OUTPUT_METHODS if _has(estimator, m)}


def _has(estimator, method):
    try:
        return callable(getattr(estimator, method))
    except AttributeError:  # available_if hides a method by raising AttributeError
        return False


def _cell_array(cell):
    if isinstance(cell, sitk.Image):
        image = cell
    elif isinstance(cell, str | Path) and Path(cell).is_file():
        image = sitk.ReadImage(str(cell))
    else:
        return None
    return (
        sitk.GetArrayFromImage(image),
        image.GetSpacing(),
        image.GetOrigin(),
        image.GetDirection(),
    )


def assert_same_output(a, b, *, rtol=1e-7, atol=1e-9, context=""):
    """Assert that two outputs of a step are equal.

    Arrays and numeric frames are compared with a tolerance; a cohort table's image cells (in-memory
    images or paths to image files) by their pixels and geometry, other cells exactly.

    Parameters
    ----------
    a, b : array-like, pandas.DataFrame or tuple of these
        The outputs to compare.
    rtol, atol : float
        Tolerances for numeric values.
    context : str, default=""
        Prefixed to the error message.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.utils.estimator_checks import assert_same_output
    >>> assert_same_output(np.ones(3), np.ones(3))
    >>> assert_same_output(np.ones(3), np.zeros(3))
    Traceback (most recent call last):
    ...
    AssertionError: ...
    """
    prefix = f"{context}: " if context else ""
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        assert len(a) == len(b), f"{prefix}outputs of different lengths"
        for x, y in zip(a, b, strict=True):
            assert_same_output(x, y, rtol=rtol, atol=atol, context=context)
        return
    if isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame), f"{prefix}a DataFrame and a {type(b).__name__}"
        assert list(a.columns) == list(b.columns), (
            f"{prefix}columns differ: {list(a.columns)} != {list(b.columns)}"
        )
        assert a.index.equals(b.index), f"{prefix}indices differ"
        for column in a.columns:
            left, right = a[column], b[column]
            if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
                np.testing.assert_allclose(
                    left.to_numpy(float),
                    right.to_numpy(float),
                    rtol=rtol,
                    atol=atol,
                    err_msg=f"{prefix}column {column!r}",
                )
                continue
            for pid, x, y in zip(a.index, left, right, strict=True):
                xa, ya = _cell_array(x), _cell_array(y)
                if xa is None or ya is None:
                    assert (x == y) or (pd.isna(x) and pd.isna(y)), (
                        f"{prefix}patient {pid!r}, column {column!r}: {x!r} != {y!r}"
                    )
                    continue
                np.testing.assert_allclose(
                    xa[0],
                    ya[0],
                    rtol=rtol,
                    atol=atol,
                    err_msg=f"{prefix}patient {pid!r}, column {column!r}",
                )
                for name, u, v in zip(
                    ("spacing", "origin", "direction"), xa[1:], ya[1:], strict=True
                ):
                    np.testing.assert_allclose(
                        u,
                        v,
                        rtol=1e-9,
                        atol=1e-9,
                        err_msg=f"{prefix}patient {pid!r}, column {column!r}: {name}",
                    )
        return
    np.testing.assert_allclose(
        np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol, err_msg=prefix
    )


def _snapshot_inputs(X):
    """Copies of the in-memory images and the state of every file and folder the table names."""
    images, files = {}, {}
    for column in X.columns:
        for pid, cell in zip(X.index, X[column], strict=True):
            if isinstance(cell, sitk.Image):
                images[(pid, column)] = (
                    cell,
                    sitk.GetArrayFromImage(cell).copy(),
                    cell.GetSpacing(),
                    cell.GetOrigin(),
                )
            elif isinstance(cell, str | Path) and Path(cell).exists():
                path = Path(cell)
                folder = path if path.is_dir() else path.parent
                if folder not in files:
                    files[folder] = {
                        p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
                    }
    return images, files


def _check_inputs_unchanged(name, X, X_copy, snapshot):
    images, files = snapshot
    pd.testing.assert_index_equal(X.index, X_copy.index)
    assert list(X.columns) == list(X_copy.columns), f"{name} changed the input table's columns"
    for column in X.columns:
        for pid, now, before in zip(X.index, X[column], X_copy[column], strict=True):
            if isinstance(before, sitk.Image):
                assert now is images[(pid, column)][0], (
                    f"{name} replaced an input image (patient {pid!r}, column {column!r})"
                )
            else:
                assert (now == before) or (pd.isna(now) and pd.isna(before)), (
                    f"{name} changed the input table (patient {pid!r}, column {column!r})"
                )
    for (pid, column), (image, array, spacing, origin) in images.items():
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(image),
            array,
            err_msg=f"{name} modified an input image in place (patient {pid!r}, column {column!r})",
        )
        assert image.GetSpacing() == spacing and image.GetOrigin() == origin, (
            f"{name} changed an input image's geometry"
        )
    for folder, state in files.items():
        now = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
        added = sorted(map(str, set(now) - set(state)))
        assert not added, f"{name} wrote into an input folder: {added[:5]}"
        assert now == state, f"{name} modified files in an input folder {str(folder)!r}"


def _check_clone(estimator, name, params):
    """A clone of `estimator`, checked: its parameters unchanged, ``set_params`` returning it, no
    fitted attribute."""
    cloned = clone(estimator)
    assert cloned is not estimator
    for key, value in params.items():
        other = cloned.get_params(deep=False)[key]
        assert other is value or repr(other) == repr(value), (
            f"{name}: clone changed parameter {key!r}"
        )
    assert cloned.set_params(**params) is cloned, f"{name}: set_params must return self"
    assert not [a for a in vars(cloned) if a.endswith("_") and not a.startswith("_")], (
        f"{name}: an unfitted estimator must not hold fitted attributes"
    )
    return cloned


def check_image_estimator(estimator, X, y=None, *, rtol=1e-6, atol=1e-8):
    """Run the estimator checks that apply to a step taking a cohort table of images.

    Parameters
    ----------
    estimator : estimator instance
        The step to check, unfitted. It is cloned; the instance given is not changed.
    X : pandas.DataFrame
        A small cohort table (a few patients with tiny images is enough).
    y : array-like, default=None
        Labels, for steps that need them.
    rtol, atol : float
        Tolerances when outputs are compared.

    Raises
    ------
    AssertionError
        With the name of the first check that fails.

    Examples
    --------
    >>> import pandas as pd, SimpleITK as sitk
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from p53radiomics.utils.estimator_checks import check_image_estimator
    >>> mask = sitk.Image([4, 4, 2], sitk.sitkUInt8)
    >>> mask[1, 1, 1] = 1
    >>> check_image_estimator(FunctionTransformer(), pd.DataFrame({"mask": [mask]}, index=["P1"]))
    """
    name = type(estimator).__name__
    tags = estimator.__sklearn_tags__()
    params = estimator.get_params(deep=False)
    cloned = _check_clone(estimator, name, params)

    # not fitted
    if tags.requires_fit:
        for method in _OUTPUT_METHODS:
            if _has(cloned, method):
                try:
                    getattr(cloned, method)(X)
                except NotFittedError:
                    continue
                raise AssertionError(f"{name}.{method} before fit must raise NotFittedError")

    # fit returns self; inputs unchanged
    X_copy = X.copy(deep=True)
    y_copy = copy.deepcopy(y)
    snapshot = _snapshot_inputs(X)
    fitted = clone(estimator)
    assert fitted.fit(X, y) is fitted, f"{name}.fit must return self"
    first = _outputs(fitted, X)
    assert first, f"{name} has no transform, predict or predict_proba"
    _check_inputs_unchanged(name, X, X_copy, snapshot)
    if y is not None:
        np.testing.assert_array_equal(
            np.asarray(y), np.asarray(y_copy), err_msg=f"{name} modified y"
        )

    # pickle round trip
    restored = pickle.loads(pickle.dumps(fitted))
    for method, out in _outputs(restored, X).items():
        assert_same_output(
            first[method], out, rtol=rtol, atol=atol, context=f"{name}.{method} after pickling"
        )

    # idempotent fit, same random_state, same output
    if "random_state" in params:
        a = clone(estimator).set_params(random_state=0)
        b = clone(estimator).set_params(random_state=0)
        a.fit(X, y)
        outs_a = _outputs(a, X)
        a.fit(X, y)
        for method, out in _outputs(a, X).items():
            assert_same_output(
                outs_a[method],
                out,
                rtol=rtol,
                atol=atol,
                context=f"{name}.{method} after a second fit",
            )
        for method, out in _outputs(b.fit(X, y), X).items():
            assert_same_output(
                outs_a[method],
                out,
                rtol=rtol,
                atol=atol,
                context=f"{name}.{method} with the same random_state",
            )
    else:
        fitted.fit(X, y)
        for method, out in _outputs(fitted, X).items():
            assert_same_output(
                first[method],
                out,
                rtol=rtol,
                atol=atol,
                context=f"{name}.{method} after a second fit",
            )
