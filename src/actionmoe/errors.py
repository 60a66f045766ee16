"""Every error a user can cause. The CLI prints the message on one line and exits with ``exit_code``.

Exit codes follow argparse's convention: 2 for a usage error (a bad option or config value, fixed
by changing the command), 1 for a runtime or data error (a corrupt file, a failed download, a
full disk, fixed by changing the world).
"""


class ActionMoEError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 1


class UsageError(ActionMoEError):
    """A command-line option or argument that cannot work as given."""

    exit_code = 2


class ConfigError(UsageError):
    """Unknown config key, wrong type or invalid value."""


class OutputError(ActionMoEError):
    """An output file or folder cannot be written (permissions, wrong type, disk full)."""


class DownloadError(ActionMoEError):
    """Every mirror failed, or a transfer could not be completed."""


class ChecksumError(DownloadError):
    """A downloaded or supplied file does not match its expected size or checksum."""


class ArchiveError(ActionMoEError):
    """An archive is corrupt, unsupported, too large, or tries to write outside its target folder."""


class UnsafeArchiveError(ArchiveError):
    """An archive entry would escape the extraction folder."""


class DatasetError(ActionMoEError):
    """Split files or dataset folders are missing or malformed."""


class VideoDecodeError(ActionMoEError):
    """A file cannot be decoded as a video."""


class CacheError(ActionMoEError):
    """A clip cache that is missing, damaged, or built with other preprocessing."""


class WeightsError(ActionMoEError):
    """A weights file that is missing, corrupt, or of another architecture."""


class ModelInputError(ActionMoEError):
    """A clip of the wrong rank, channel count or length."""


class CheckpointError(ActionMoEError):
    """Missing, unreadable, corrupt or incompatible checkpoint."""


class TrainingError(ActionMoEError):
    """Training cannot continue (non-finite loss, no decodable clip)."""


class RunLockedError(ActionMoEError):
    """Another process is writing into the same run folder."""


class WorkerCrashError(ActionMoEError):
    """A worker process died (a native crash in a video library, or the out-of-memory killer)."""


class PredictionStoppedError(ActionMoEError):
    """A prediction was told to stop (its time limit, its client gone, the server stopping)."""
