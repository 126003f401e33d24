"""The shipped parameter file must read under any locale: PyRadiomics (pykwalify) opens it with the
platform's default encoding, which is ASCII under a C or POSIX locale."""

from p53radiomics.radiomics import DEFAULT_PARAMS_FILE


def test_default_parameter_file_is_ascii():
    DEFAULT_PARAMS_FILE.read_bytes().decode("ascii")
