"""A per-case disk cache for the heavy stateless steps (preprocessing, radiomics extraction).

Cross-validation and grid search call a stateless step on the same case many times; with a cache
folder each case is computed once. An entry's key is a hash of

- the *contents* of the case's inputs (the bytes of each file, or the pixels, pixel type and
  geometry of an in-memory image: see :func:`fingerprint`), never their paths or times, so that a
  moved file still hits and an edited one misses;
- the step's name, its format version and its parameters (anything JSON can write, compared by
  value), and the format of the cache itself (entries of an older format are misses, never read).

**Checksums.** Every file of an entry has a checksum beside it, ``<file>.blake2b``: one line with the
BLAKE2b (160-bit) digest and the size of its bytes, written with the entry. Every read verifies it:
:meth:`CaseCache.load` unpickles only bytes that match, and :meth:`CaseCache.image_path` hands out a
path only when every file of the entry (e.g. an image and the mask saved under the same key) matches.
A damaged entry (a cut or zero-filled tail, a flipped bit, a missing or unreadable checksum) is
removed and reported once, by a warning of this module's logger naming it; the caller then computes
it again. A damaged entry is never served.

The checksum is a separate file, not embedded, because image entries stay plain image files that
SimpleITK (and the user) read by path, as a step's output. Its digest is the one :func:`fingerprint`
computes for a file, so verifying a preprocessed image is the hashing that the next step's
fingerprint of that file would do anyway (it is remembered for the process): on a cached re-run of
preprocessing then radiomics the checksums cost almost nothing (``benchmarks/bench_cache.py``).

**Atomic writes.** An entry is written to a temporary file in the same folder, its checksum is put in
place, then the entry is renamed over its final name (:func:`os.replace` is atomic on POSIX and
Windows): a reader sees no entry or a whole entry with its checksum. Two processes sharing a folder
may write the same entry at once (the last rename wins; should their bytes differ, a reader may
catch one's checksum with the other's entry and computes the entry again). A killed run leaves at
most a stray temporary file (a name starting with ``.`` and holding ``.tmp``) and perhaps a
checksum without its entry. Those older than an hour are removed by the first use of the namespace
in each later process and by :meth:`CaseCache.clear`. The test is their age, not their writer's
process id: a cache folder may be shared by processes on several machines (dask workers on a network
filesystem), where a process id names nothing, and a live writer modifies its temporary file as it
writes it and renames it within a second of its last write, so one untouched for an hour is
abandoned.

This module is written by hand because ``joblib.Memory`` keys on the arguments' pickles (a path is
hashed as a string, not by the file it names; a SimpleITK image does not pickle by content), keeps
one folder per function call and offers neither checksums nor atomic multi-process writes.
"""

import hashlib
import io
import json
import logging
import os
import time
import uuid
from pathlib import Path

import joblib
import numpy as np
import SimpleITK as sitk

__all__ = ["CaseCache", "fingerprint"]

logger = logging.getLogger(__name__)

#: Format of the entries on disk, part of every key (1: without checksums).
_CACHE_FORMAT = 2
#: A temporary file untouched for this long (seconds) was left by a killed write.
_STALE_SECONDS = 3600.0
_CHECKSUM_SUFFIX = ".blake2b"
_CHECKSUM_TAG = "blake2b-160"
_TMP_MARK = ".tmp"
_DIGEST_SIZE = 20
# (path, size, mtime_ns) -> digest; a file is hashed once per process unless it changes.
_FILE_DIGESTS = {}
# (folder, namespace) pairs whose stale temporary files this process has removed.
_SWEPT = set()


def _new_digest(data=b""):
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE)


def _file_digest(path, remember=True):
    """Hex digest and size of a file's bytes (hashed now); remembered for :func:`fingerprint`."""
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())  # of the file hashed, even if the path is replaced meanwhile
        digest = hashlib.file_digest(fh, _new_digest).hexdigest()
    if remember:
        _FILE_DIGESTS[(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)] = digest
    return digest, stat.st_size


def _hash_file(path, digest):
    stat = path.stat()
    known = _FILE_DIGESTS.get((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    if known is None:
        known, _ = _file_digest(path)
    digest.update(known.encode())


def _hash_image(image, digest):
    digest.update(image.GetPixelIDTypeAsString().encode())
    for values in (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()):
        digest.update(np.asarray(values, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).tobytes())


def fingerprint(cell):
    """Hash the contents of an image cell: a file, a folder of files, or a SimpleITK image.

    Parameters
    ----------
    cell : str, os.PathLike or SimpleITK.Image
        A file (its bytes are hashed), a folder (the relative names and bytes of the files it holds,
        recursively, in sorted order), or an image in memory (its pixel type, geometry and pixels).

    Returns
    -------
    digest : str
        40 hexadecimal characters (BLAKE2b, 160 bits).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> from p53radiomics.cache import fingerprint
    >>> a = sitk.Image([4, 4, 2], sitk.sitkFloat32)
    >>> b = sitk.Image([4, 4, 2], sitk.sitkFloat32)
    >>> fingerprint(a) == fingerprint(b)
    True
    >>> b.SetSpacing((1.0, 1.0, 2.0))
    >>> fingerprint(a) == fingerprint(b)
    False
    """
    digest = hashlib.blake2b(digest_size=20)
    if isinstance(cell, sitk.Image):
        digest.update(b"image:")
        _hash_image(cell, digest)
        return digest.hexdigest()
    if isinstance(cell, str):
        from .io import parse_cell  # lazy: io does not import the cache

        path_text, key, value = parse_cell(cell)
        if key is not None:  # a selector: the series, segment or ROI it names is part of the key
            digest.update(f"selector:{key}={value}:".encode())
            cell = path_text
    path = Path(cell)
    if path.is_dir():
        digest.update(b"folder:")
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            _hash_file(child, digest)
    else:
        digest.update(b"file:")
        _hash_file(path, digest)
    return digest.hexdigest()


def _canonical(value):
    """JSON-able form of a parameter value, equal for equal values."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _checksum_path(path):
    return path.with_name(path.name + _CHECKSUM_SUFFIX)


def _is_temporary(name):
    return name.startswith(".") and _TMP_MARK in name


def _verify_file(path, read=False):
    """Check a file against its checksum file.

    Returns ``(problem, data)``: ``problem`` is ``None`` when the file matches (``data`` then holds
    its bytes if `read`, else ``None``), or says what is wrong. Raises :class:`FileNotFoundError`
    if the file itself is gone (a miss, not damage).
    """
    try:
        tag, expected, size = _checksum_path(path).read_text(encoding="ascii").split()
        size = int(size)
        if tag != _CHECKSUM_TAG or len(expected) != 2 * _DIGEST_SIZE:
            raise ValueError(tag)
    except FileNotFoundError:
        if not path.exists():
            raise
        return "it has no checksum", None
    except (OSError, ValueError, UnicodeDecodeError):
        return "its checksum file is unreadable", None
    try:
        if read:
            data = path.read_bytes()
            actual_size = len(data)
        else:
            data, actual_size = None, path.stat().st_size
        if actual_size != size:  # a cut or extended file, found without hashing it
            return f"it holds {actual_size} bytes instead of {size}", None
        if read:
            actual = _new_digest(data).hexdigest()
        else:
            actual, actual_size = _file_digest(path)
    except FileNotFoundError:
        raise
    except OSError as exc:  # e.g. a read error of the disk
        return f"it cannot be read ({exc})", None
    if actual != expected or actual_size != size:
        return "its content does not match its checksum", None
    return None, data


class CaseCache:
    """A folder of cached per-case results, keyed by input contents and step parameters.

    Every file of an entry is written atomically with a checksum that every read verifies: a
    damaged entry is removed, reported once by a warning of the ``p53radiomics.cache`` logger,
    and read as missing, so that the caller computes it again (see the module's documentation).

    Parameters
    ----------
    directory : str or os.PathLike
        The cache folder (created on first write). May be shared by several processes and steps.
    namespace : str
        The step's name; entries live in ``directory / namespace``.
    version : int, default=1
        Format version of the step's entries; raise it when the step's output changes meaning so
        that old entries are never read again.

    Attributes
    ----------
    hits : int
        Entries found intact by :meth:`load` or :meth:`image_path` in this process.
    misses : int
        Entries not found, or found damaged.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics.cache import CaseCache
    >>> cache = CaseCache(tempfile.mkdtemp(), "example")
    >>> key = cache.key("0" * 40, params={"binCount": 64})
    >>> cache.load(key) is None
    True
    >>> _ = cache.save(key, {"feature": 1.5})
    >>> cache.load(key)
    {'feature': 1.5}
    >>> cache.hits, cache.misses
    (1, 1)
    """

    def __init__(self, directory, namespace, version=1):
        self.directory = Path(directory)
        self.namespace = namespace
        self.version = version
        self.hits = 0
        self.misses = 0

    def key(self, *fingerprints, params=None):
        """Key of an entry: a hash of the inputs' fingerprints, the namespace, versions and parameters.

        Parameters
        ----------
        *fingerprints : str
            Fingerprints of the case's inputs (see :func:`fingerprint`), in a fixed order.
        params : dict, default=None
            The step's parameters that change its output.

        Returns
        -------
        key : str
            40 hexadecimal characters.
        """
        payload = json.dumps(
            {
                "namespace": self.namespace,
                "version": self.version,
                "format": _CACHE_FORMAT,
                "inputs": list(fingerprints),
                "params": _canonical(params),
            },
            sort_keys=True,
        )
        return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()

    def path(self, key, suffix=".joblib"):
        """Where the file of `key` with `suffix` lives (it may not exist; it is not verified)."""
        return self.directory / self.namespace / key[:2] / f"{key}{suffix}"

    def _atomic_write(self, final, write):
        self._sweep_once()
        final.parent.mkdir(parents=True, exist_ok=True)
        # Temporary names start with "." and hold ".tmp"; the entry's keeps its suffix, so that
        # writers that choose a format by extension work.
        tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_MARK}"
        tmp = final.with_name(f".{final.stem}.{tag}{final.suffix}")
        checksum = _checksum_path(final)
        tmp_checksum = checksum.with_name(f".{checksum.name}.{tag}")
        try:
            write(tmp)
            digest, size = _file_digest(tmp, remember=False)
            tmp_checksum.write_text(f"{_CHECKSUM_TAG} {digest} {size}\n", encoding="ascii")
            # The checksum first: a reader never finds the new entry without it.
            os.replace(tmp_checksum, checksum)
            os.replace(tmp, final)
        finally:
            for path in (tmp, tmp_checksum):
                if path.exists():
                    path.unlink()
        return final

    def _verified(self, key, suffix, read=False):
        """Whether the file of `key` and `suffix` exists and every file of the entry is intact.

        Returns ``(intact, data)``, ``data`` the bytes of the file if `read`. The files of a damaged
        entry are removed and the entry is reported, once.
        """
        self._sweep_once()
        final = self.path(key, suffix)
        try:
            names = sorted(
                name
                for name in os.listdir(final.parent)
                if name.startswith(key) and not name.endswith(_CHECKSUM_SUFFIX)
            )
        except OSError:  # no such folder (yet), or one this process may not read
            return False, None
        if final.name not in names:
            return False, None
        problems, data = {}, None
        for name in names:
            try:
                problem, content = _verify_file(final.parent / name, read and name == final.name)
            except FileNotFoundError:  # removed by another process meanwhile: not damage
                if name == final.name:
                    return False, None
                continue
            if problem is not None:
                problems[name] = problem
            elif name == final.name:
                data = content
        if problems:
            for name in problems:
                for path in (final.parent / name, _checksum_path(final.parent / name)):
                    try:  # on Windows a file open elsewhere stays: the recomputation replaces it
                        path.unlink(missing_ok=True)
                    except OSError:
                        pass
            logger.warning(
                "Damaged cache entry %s (%s): removed, it is computed again.",
                final.parent / key,
                "; ".join(f"{name}: {problem}" for name, problem in problems.items()),
            )
            return False, None
        return True, data

    def load(self, key):
        """Return the object stored under `key`, or ``None`` if there is none or it is damaged.

        The entry's bytes are checked against their checksum before they are unpickled.
        """
        intact, data = self._verified(key, ".joblib", read=True)
        value = None
        if intact:
            try:
                value = joblib.load(io.BytesIO(data))
            except Exception:  # intact but unreadable here (e.g. another joblib): computed again
                value = None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def save(self, key, value):
        """Store a picklable object under `key` atomically, with its checksum; return its path."""
        return self._atomic_write(self.path(key), lambda tmp: joblib.dump(value, tmp))

    def image_path(self, key, suffix=".nrrd"):
        """Path of the cached image of `key`, or ``None`` if there is none or the entry is damaged.

        Every file of the entry (images saved under `key` with other suffixes too, e.g. a mask) is
        checked against its checksum first, so the path returned can be read as it is.
        """
        intact, _ = self._verified(key, suffix)
        if intact:
            self.hits += 1
            return self.path(key, suffix)
        self.misses += 1
        return None

    def save_image(self, key, image, suffix=".nrrd", compress=True):
        """Write a SimpleITK image under `key` atomically, with its checksum; return its path."""
        return self._atomic_write(
            self.path(key, suffix),
            lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress),
        )

    def _sweep_once(self):
        marker = (os.path.abspath(self.directory), self.namespace)
        if marker not in _SWEPT:
            _SWEPT.add(marker)
            self.remove_stale_temporaries()

    def remove_stale_temporaries(self, max_age=_STALE_SECONDS):
        """Remove the files that killed writes left in this namespace; return how many.

        Called by the first read or write of the namespace in each process. A temporary file is
        removed when it has not been modified for `max_age` seconds, as is a checksum file of that
        age whose entry is missing; a live writer's files are younger.

        Parameters
        ----------
        max_age : float, default=3600
            Age in seconds (from the file's modification time) beyond which a write is abandoned.

        Returns
        -------
        n_removed : int
        """
        cutoff = time.time() - max_age
        removed = 0
        for folder, _, names in os.walk(self.directory / self.namespace):
            for name in names:
                path = Path(folder, name)
                stray = _is_temporary(name) or (
                    name.endswith(_CHECKSUM_SUFFIX)
                    and not path.with_name(name[: -len(_CHECKSUM_SUFFIX)]).exists()
                )
                try:
                    if stray and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except OSError:  # removed by another process meanwhile, or a read-only cache
                    pass
        if removed:
            logger.info(
                "Removed %d file(s) left by killed writes from the cache %s",
                removed,
                self.directory / self.namespace,
            )
        return removed

    def clear(self):
        """Remove every entry of this namespace (other namespaces in the folder are kept).

        The temporary files of writes in progress (younger than an hour) are kept, so that a
        process writing into the cache meanwhile is not broken.
        """
        cutoff = time.time() - _STALE_SECONDS
        for folder, _, names in os.walk(self.directory / self.namespace, topdown=False):
            for name in names:
                path = Path(folder, name)
                try:
                    if not (_is_temporary(name) and path.stat().st_mtime >= cutoff):
                        path.unlink()
                except OSError:  # removed meanwhile, or busy: as shutil.rmtree(ignore_errors=True)
                    pass
            try:
                os.rmdir(folder)
            except OSError:  # not empty: a write in progress
                pass

    def __repr__(self):
        return f"CaseCache({str(self.directory)!r}, {self.namespace!r}, version={self.version})"
