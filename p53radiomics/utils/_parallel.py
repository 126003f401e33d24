"""Parallel loops through joblib, and process-wide settings that concurrent threads share.

Every loop over cases goes through :func:`parallel_map`, so the backend is the one joblib picks:
loky processes by default, or whatever a :func:`joblib.parallel_config` context names (``"dask"``
for a ``dask.distributed`` cluster, ``"threading"``...), as for scikit-learn's own ``n_jobs``.

A worker may be a thread (a dask worker with several threads, a ``processes=False`` cluster, the
threading backend), so a setting that is global to the process (SimpleITK's number of threads, a
logger's level) is changed through :class:`SharedSetting`, never saved and restored by each task.
"""

import threading
from contextlib import contextmanager

from joblib import Parallel, effective_n_jobs

__all__ = ["SharedSetting", "parallel_map"]


def parallel_map(function, arguments, *, n_jobs=None, prefer="processes"):
    """Run ``function(*args)`` for each tuple of `arguments` through :class:`joblib.Parallel`.

    The results come in the order of `arguments`, as they are computed where the backend can
    stream them (``return_as="generator"``: loky, threading, dask), so that a caller that writes
    each result away holds one at a time; as a list where it cannot (the multiprocessing backend).

    Parameters
    ----------
    function : callable
        Picklable (defined at module level), for process and cluster workers.
    arguments : list of tuple
        One tuple of positional arguments per call.
    n_jobs : int or None, default=None
        As for scikit-learn: ``None`` means 1 unless a :func:`joblib.parallel_config` context says
        otherwise; ``-1`` all the backend's workers. A local backend never starts more workers than
        there are calls, and runs a single call in the calling process. A ``dask`` backend gets
        every call, whatever `n_jobs` (joblib's dask backend uses all the cluster's workers).
    prefer : {"processes", "threads"}, default="processes"
        joblib's soft hint, used when no context names a backend.

    Returns
    -------
    results : iterator or list
        ``function(*args)`` for each tuple, in order. A generator has a ``close`` method: closing
        it early cancels the calls not yet started.
    """
    arguments = list(arguments)
    if not arguments:
        return []
    # effective_n_jobs() answers for the context's backend (all workers for dask, whatever n_jobs)
    n_jobs = max(1, min(effective_n_jobs(n_jobs), len(arguments)))
    tasks = ((function, args, {}) for args in arguments)
    try:
        parallel = Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator")
    except ValueError:  # a backend that cannot stream its results (multiprocessing)
        parallel = Parallel(n_jobs=n_jobs, prefer=prefer)
    return parallel(tasks)


class SharedSetting:
    """A process-wide setting held while at least one thread is inside :meth:`hold`.

    The first thread in applies the setting, the last one out restores what was there before; the
    threads in between find it applied. Saving and restoring in each thread instead goes wrong as
    soon as two overlap: the second saves the first one's value, and whichever leaves last puts
    back the wrong one (or the first restores the old value while the second still runs).

    Parameters
    ----------
    apply : callable
        Called by the first thread in, with the arguments it gave :meth:`hold`, to apply the
        setting; returns a callable that restores the previous state. The threads that come in
        while the setting is held find it as the first one applied it.

    Examples
    --------
    >>> state = {"threads": 8}
    >>> def one_thread():
    ...     saved, state["threads"] = state["threads"], 1
    ...     return lambda: state.update(threads=saved)
    >>> setting = SharedSetting(one_thread)
    >>> with setting.hold():
    ...     with setting.hold():  # another task in the same process, nested or in a thread
    ...         state["threads"]
    1
    >>> state["threads"]
    8
    """

    def __init__(self, apply):
        self.apply = apply
        self._lock = threading.Lock()
        self._holders = 0
        self._restore = None

    @contextmanager
    def hold(self, *args):
        """Context manager: the setting is applied (``apply(*args)``) inside the block."""
        with self._lock:
            if self._holders == 0:
                self._restore = self.apply(*args)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    restore, self._restore = self._restore, None
                    restore()
