"""Errors a user can cause. The CLI prints their message on one line and exits non-zero."""


class ActionMoEError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(ActionMoEError):
    """Unknown config key, wrong type or invalid value."""


class DownloadError(ActionMoEError):
    """Every mirror failed, or a transfer could not be completed."""


class ChecksumError(DownloadError):
    """A downloaded or supplied file does not match its expected size or checksum."""


class ArchiveError(ActionMoEError):
    """An archive is corrupt, unsupported, or tries to write outside its target folder."""


class UnsafeArchiveError(ArchiveError):
    """An archive entry would escape the extraction folder."""


class DatasetError(ActionMoEError):
    """Split files or dataset folders are missing or malformed."""


class VideoDecodeError(ActionMoEError):
    """A video file cannot be decoded."""
