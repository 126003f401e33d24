"""Exceptions and warnings raised by p53radiomics.

Every problem found in a cohort table names the patient id and the column, so that a user with a
batch of hundreds of cases can find the offending file at once.
"""

__all__ = ["CUDAGraphWarning", "CohortError", "SkippedCaseWarning", "UnseenBatchWarning"]


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


class CUDAGraphWarning(RuntimeWarning):
    """Warned once when the CNN's training step cannot be captured as a CUDA graph.

    The network then trains on with the eager step: the same results, more slowly. The message
    says what stopped the capture (an operation that makes the host wait for the GPU, an error
    raised during the capture). See :ref:`the GPU page <gpus>`.
    """
