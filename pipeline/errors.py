"""User-facing errors.

A ``PipelineError`` carries a one-line message that names the file or key at
fault; the CLIs print it as ``error: <message>`` and exit non-zero, without a
traceback.
"""


class PipelineError(Exception):
    """An error caused by bad input, reported to the user as one line."""


class ConfigError(PipelineError):
    """A configuration file is invalid (unknown key, wrong type, missing key)."""


class InputFileError(PipelineError):
    """An input file is missing, unreadable or malformed."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # rebuilt from (path, problem), so the error survives pickling (dask workers)
        return (type(self), (self.path, self.problem))


class InputIOError(InputFileError, OSError):
    """An input file cannot be read as what it should be: missing, not a regular
    file, truncated or structurally damaged. Also an ``OSError``, which is what
    fitsio (and so the reference MEDS reader) raises for these."""


class InputValueError(InputFileError, ValueError):
    """A request an input file cannot serve: an index out of range, an absent HDU,
    column or PSF. Also a ``ValueError``, which is what the reference MEDS reader
    raises for these."""
