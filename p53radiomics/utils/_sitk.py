"""SimpleITK settings shared by the image steps."""

from contextlib import contextmanager

import SimpleITK as sitk

__all__ = ["one_sitk_thread"]


@contextmanager
def one_sitk_thread():
    """SimpleITK on one thread inside the block; the previous number is restored after.

    In a worker process the workers share the cores. In the calling process it makes the output
    independent of ``n_jobs`` and of the machine: multi-threaded filters (N4, ``sitk.Normalize``'s
    statistics) sum in an order that depends on the number of threads, which moves the last bits of
    their results.
    """
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
