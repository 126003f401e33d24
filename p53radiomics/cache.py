"""A per-case disk cache for the heavy stateless steps (preprocessing, radiomics extraction).

Cross-validation and grid search call a stateless step on the same case many times; with a cache
folder each case is computed once. An entry's key is a hash of

- the *contents* of the case's inputs (the bytes of each file, or the pixels, pixel type and
  geometry of an in-memory image: see :func:`fingerprint`), never their paths or times, so that a
  moved file still hits and an edited one misses;
- the step's name, a format version and its parameters (anything JSON can write, compared by value).

Entries are written atomically: to a temporary file in the same folder, then renamed over the final
name (:func:`os.replace` is atomic on POSIX and Windows). A killed run leaves at most a stray
``.tmp`` file, never a half-written entry, and two processes sharing a folder can write the same
entry at once: both write the same bytes and the last rename wins.

This module is written by hand because ``joblib.Memory`` keys on the arguments' pickles (a path is
hashed as a string, not by the file it names; a SimpleITK image does not pickle by content), keeps
one folder per function call and offers no atomic multi-process write.
"""

import hashlib
import json
import os
import uuid
from pathlib import Path

import joblib
import numpy as np
import SimpleITK as sitk

__all__ = ["CaseCache", "fingerprint"]

_CHUNK = 1 << 20
# (path, size, mtime_ns) -> digest; a file is hashed once per process unless it changes.
_FILE_DIGESTS = {}


def _hash_file(path, digest):
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    known = _FILE_DIGESTS.get(memo_key)
    if known is None:
        h = hashlib.blake2b(digest_size=20)
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        known = h.hexdigest()
        _FILE_DIGESTS[memo_key] = known
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


class CaseCache:
    """A folder of cached per-case results, keyed by input contents and step parameters.

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
        Entries found by :meth:`load` or :meth:`image_path` in this process.
    misses : int
        Entries not found.

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
        """Key of an entry: a hash of the inputs' fingerprints, the namespace, version and parameters.

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
                "inputs": list(fingerprints),
                "params": _canonical(params),
            },
            sort_keys=True,
        )
        return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()

    def path(self, key, suffix=".joblib"):
        """Where the entry of `key` lives (it may not exist)."""
        return self.directory / self.namespace / key[:2] / f"{key}{suffix}"

    def _atomic_write(self, final, write):
        final.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name keeps the suffix, so writers that choose a format by extension work.
        tmp = final.with_name(
            f".{final.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{final.suffix}"
        )
        try:
            write(tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return final

    def load(self, key):
        """Return the object stored under `key`, or ``None`` if there is none (or it is unreadable)."""
        final = self.path(key)
        if final.exists():
            try:
                value = joblib.load(final)
            except Exception:  # a corrupt entry (e.g. a disk that filled up) is recomputed
                value = None
            if value is not None:
                self.hits += 1
                return value
        self.misses += 1
        return None

    def save(self, key, value):
        """Store a picklable object under `key` atomically; return the entry's path."""
        return self._atomic_write(self.path(key), lambda tmp: joblib.dump(value, tmp))

    def image_path(self, key, suffix=".nrrd"):
        """Path of the cached image of `key` if it exists, else ``None``."""
        final = self.path(key, suffix)
        if final.exists():
            self.hits += 1
            return final
        self.misses += 1
        return None

    def save_image(self, key, image, suffix=".nrrd", compress=True):
        """Write a SimpleITK image under `key` atomically; return the entry's path."""
        return self._atomic_write(
            self.path(key, suffix),
            lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress),
        )

    def clear(self):
        """Remove every entry of this namespace (other namespaces in the folder are kept)."""
        import shutil

        shutil.rmtree(self.directory / self.namespace, ignore_errors=True)

    def __repr__(self):
        return f"CaseCache({str(self.directory)!r}, {self.namespace!r}, version={self.version})"
