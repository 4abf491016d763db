"""``rtsep live``: separate an audio input in real time onto routed output channels.

devices: PortAudio devices (list, resolve, check a rate); routing: sources -> output channels with
gains, mute and solo; session: the stream, its worker (resampling + the Separator's block engine)
and the counters. Importing this package does not start PortAudio.
"""

from __future__ import annotations

from .devices import check_rate, find_device, list_devices, native_rate
from .routing import Route, default_gains, parse_route
from .session import LATE_FRACTION, LiveSession, LiveStats, processing_lead, project, rms_db

__all__ = ["LATE_FRACTION", "LiveSession", "LiveStats", "Route", "check_rate", "default_gains", "find_device",
           "list_devices", "native_rate", "parse_route", "processing_lead", "project", "rms_db"]
