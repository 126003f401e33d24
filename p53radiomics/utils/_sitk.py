"""SimpleITK settings shared by the image steps."""

import SimpleITK as sitk

from ._parallel import SharedSetting

__all__ = ["one_sitk_thread", "sitk_reason"]


def _set_one_thread():
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    return lambda: sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


_ONE_THREAD = SharedSetting(_set_one_thread)


def one_sitk_thread():
    """Context manager: SimpleITK on one thread inside the block; the previous number is restored after.

    In a worker process the workers share the cores. In the calling process it makes the output
    independent of ``n_jobs``, of the backend and of the machine: multi-threaded filters (N4,
    ``sitk.Normalize``'s statistics) sum in an order that depends on the number of threads, which
    moves the last bits of their results.

    The number of threads is global to the process, and a process may run several cases at once in
    threads (a dask worker with several threads, a ``processes=False`` cluster, joblib's threading
    backend): it is set to 1 while any of them is inside the block and restored when the last one
    leaves (:class:`~p53radiomics.utils._parallel.SharedSetting`).
    """
    return _ONE_THREAD.hold()


def sitk_reason(exc):
    """The informative first line of a SimpleITK exception."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR" in ln.upper() or "exception" in ln.lower():
            continue
        return ln
    return lines[-1] if lines else type(exc).__name__
