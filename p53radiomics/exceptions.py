"""Exceptions and warnings raised by p53radiomics.

Every problem found in a cohort table names the patient id and the column, so that a user with a
batch of hundreds of cases can find the offending file at once.
"""

__all__ = [
    "CUDAGraphWarning",
    "CohortError",
    "InvertedBranchWarning",
    "ModelFileError",
    "ModelVersionWarning",
    "SkippedCaseWarning",
    "UnseenBatchWarning",
]


class CohortError(ValueError):
    """A problem with one cell, column or row of a cohort table.

    Subclass of :class:`ValueError`, so code that catches ``ValueError`` keeps working.

    Parameters
    ----------
    message : str
        What is wrong, without the location (it is added from the other arguments).
    patient_id : object, default=None
        Index value of the row concerned, or ``None`` where the problem is not one row's.
    column : str, default=None
        Column concerned, or ``None`` where the problem is not one column's.

    Attributes
    ----------
    patient_id : object or None
        As given.
    column : str or None
        As given.
    reason : str
        The message without the location.

    Examples
    --------
    >>> from p53radiomics.exceptions import CohortError
    >>> err = CohortError("mask is empty", patient_id="P007", column="ap_mask")
    >>> str(err)
    "patient 'P007', column 'ap_mask': mask is empty"
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, message, *, patient_id=None, column=None):
        self.patient_id = patient_id
        self.column = column
        self.reason = message
        where = []
        if patient_id is not None:
            where.append(f"patient {patient_id!r}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def __reduce__(self):
        # Keep the keyword-only arguments through pickling (joblib workers send errors back).
        return (_rebuild_cohort_error, (type(self), self.reason, self.patient_id, self.column))


def _rebuild_cohort_error(cls, reason, patient_id, column):
    return cls(reason, patient_id=patient_id, column=column)


class SkippedCaseWarning(UserWarning):
    """Warned when a step run with ``on_error="skip"`` leaves cases out.

    The skipped cases and their reasons are also stored in the step's ``skipped_`` attribute (or
    returned alongside the result), so that a report can list them.
    """


class UnseenBatchWarning(UserWarning):
    """Warned when data to harmonise hold a batch (scanner) that the harmoniser did not see in ``fit``.

    The message names the unseen batch values. Their samples are harmonised with the pooled
    estimates of the training batches (see :class:`~p53radiomics.ComBatHarmonizer`): put on the
    same footing as the others, without their own batch effect removed.
    """


class InvertedBranchWarning(UserWarning):
    """Warned when :class:`~p53radiomics.StackingFusion` weighs a branch's score negatively.

    The final logistic regression is fitted on the branches' out-of-fold scores; a negative
    coefficient means that a higher score from that branch lowers the fused probability. It
    comes from a branch whose out-of-fold scores ranked the training patients against the label
    (an overfit or uninformative branch, common in small cohorts), or from a branch that overlaps
    another one. The message names the branches and their coefficients. An overfit branch,
    refitted on all the training patients, scores them almost perfectly, and the negative weight
    then ranks them in reverse: the fused model's training-cohort figures say nothing of its
    validation ones.
    """


class CUDAGraphWarning(RuntimeWarning):
    """Warned once when the CNN's training step cannot be captured as a CUDA graph.

    The network then trains on with the eager step: the same results, more slowly. The message
    says what stopped the capture (an operation that makes the host wait for the GPU, an error
    raised during the capture). See :ref:`the GPU page <gpus>`.
    """


class ModelFileError(ValueError):
    """A model file that :func:`~p53radiomics.load_model` refuses to load.

    Raised before anything from the file is built: a member whose SHA-256 differs from the
    manifest's, a member the format does not define (a pickle, say), a type that is not trusted,
    a file that is not a model archive at all, or a file format of another major version.
    Subclass of :class:`ValueError`.

    Parameters
    ----------
    message : str
        What is wrong, without the location (it is added from the other arguments).
    path : str or path-like, default=None
        The model file.
    member : str, default=None
        The archive member concerned, e.g. ``"model.skops"``, or ``None`` for the whole file.

    Attributes
    ----------
    path : str or None
        As given, as a string.
    member : str or None
        As given.
    reason : str
        The message without the location.

    Examples
    --------
    >>> from p53radiomics.exceptions import ModelFileError
    >>> err = ModelFileError("SHA-256 differs from the manifest's", path="m.p53",
    ...                      member="model.skops")
    >>> str(err)
    "model file 'm.p53', member 'model.skops': SHA-256 differs from the manifest's"
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, message, *, path=None, member=None):
        self.path = None if path is None else str(path)
        self.member = member
        self.reason = message
        where = []
        if self.path is not None:
            where.append(f"model file {self.path!r}")
        if member is not None:
            where.append(f"member {member!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def __reduce__(self):
        return (_rebuild_model_file_error, (type(self), self.reason, self.path, self.member))


def _rebuild_model_file_error(cls, reason, path, member):
    return cls(reason, path=path, member=member)


class ModelVersionWarning(UserWarning):
    """Warned when a model file was saved with other versions than those installed.

    The message names each library whose version differs, with the version that saved the file
    and the one installed. The model loads; its predictions may differ from those it gave where
    it was saved, so check them on cases whose predictions are known.
    """
