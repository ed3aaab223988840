"""Textual messages that carry the session's events from its worker thread to the UI thread.

Position in the pipeline: between :class:`~stream_ser.session.ListenSession` and
:class:`~stream_ser.tui.app.ListenApp`. The session emits plain dataclasses
(:data:`stream_ser.session.SessionEvent`; the session knows nothing of Textual);
:func:`message_for` wraps each in the message class of its type, and the app handles every type
in its own ``on_...`` method (``PredictionMade`` -> ``on_prediction_made``), as Textual
dispatches messages by class. A message class here has the name of the event it carries.

Thread: built on the worker thread (:meth:`ListenApp.post_event`), handled on the UI thread.
"""

from __future__ import annotations

import logging
from typing import Any

from textual.message import Message

from .. import session


class SessionMessage(Message):
    """One session event, on its way from the worker thread to the UI thread.

    Args:
        event: The event; its type decides the subclass (see :func:`message_for`).

    Attributes:
        event: As given.
    """

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class SessionStarted(SessionMessage):
    """The source is open (:class:`stream_ser.session.SessionStarted`)."""

    event: session.SessionStarted


class LevelMeasured(SessionMessage):
    """The input level of the last interval (:class:`stream_ser.session.LevelMeasured`)."""

    event: session.LevelMeasured


class PredictionMade(SessionMessage):
    """A window scored on one channel (:class:`stream_ser.session.PredictionMade`)."""

    event: session.PredictionMade


class CalibrationProgress(SessionMessage):
    """Speech heard so far while calibrating (:class:`stream_ser.session.CalibrationProgress`)."""

    event: session.CalibrationProgress


class HopPaused(SessionMessage):
    """A hop that ended while scoring was paused (:class:`stream_ser.session.HopPaused`)."""

    event: session.HopPaused


class PauseApplied(SessionMessage):
    """Scoring paused or resumed at a hop boundary (:class:`stream_ser.session.PauseApplied`)."""

    event: session.PauseApplied


class MarkerWritten(SessionMessage):
    """A marker recorded (:class:`stream_ser.session.MarkerWritten`)."""

    event: session.MarkerWritten


class SessionEnded(SessionMessage):
    """The session stopped and closed its outputs (:class:`stream_ser.session.SessionEnded`)."""

    event: session.SessionEnded


#: Session event type -> the message class that carries it.
MESSAGE_CLASSES: dict[type, type[SessionMessage]] = {
    session.SessionStarted: SessionStarted,
    session.LevelMeasured: LevelMeasured,
    session.PredictionMade: PredictionMade,
    session.CalibrationProgress: CalibrationProgress,
    session.HopPaused: HopPaused,
    session.PauseApplied: PauseApplied,
    session.MarkerWritten: MarkerWritten,
    session.SessionEnded: SessionEnded,
}


def message_for(event: Any) -> SessionMessage:
    """The message that carries ``event`` to the UI.

    Raises:
        TypeError: If ``event`` is not one of :data:`stream_ser.session.SessionEvent`'s types.
    """
    try:
        cls = MESSAGE_CLASSES[type(event)]
    except KeyError:
        raise TypeError(f"not a session event: {type(event).__name__}") from None
    return cls(event)


class LogRecorded(Message):
    """A log record (warning or worse) to show as a notification.

    Args:
        record: The record, logged by any thread.

    Attributes:
        record: As given.
    """

    def __init__(self, record: logging.LogRecord) -> None:
        super().__init__()
        self.record = record
