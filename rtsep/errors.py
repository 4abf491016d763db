"""Errors rtsep reports to users: each maps to one line and a non-zero exit in the CLI."""

from __future__ import annotations


class RtsepError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 1


class AudioError(RtsepError):
    """Missing, unreadable, empty or otherwise unusable audio."""

    exit_code = 2


class BundleError(RtsepError):
    """A model directory that is missing, corrupt or does not match what is asked of it."""

    exit_code = 3


class DataError(RtsepError):
    """A data folder without usable audio, or an unknown source name."""

    exit_code = 4


class DeviceError(RtsepError):
    """An audio device that does not exist, lacks channels, or vanished mid-stream."""

    exit_code = 5


class ConfigError(RtsepError, ValueError):
    """A setting out of its range (a Langevin option given on the command line or in a card)."""

    exit_code = 6
