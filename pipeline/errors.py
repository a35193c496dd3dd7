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
