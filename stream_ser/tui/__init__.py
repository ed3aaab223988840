"""The terminal UI of ``stream-ser listen`` (Textual).

Position in the pipeline: a consumer of a listening session, beside the CSV. The session
(:mod:`stream_ser.session`, no Textual) runs capture, scoring and CSV writes on its own worker
thread and reports events; the app (:mod:`stream_ser.tui.app`) shows them: source header, input
level meter, current emotion, smoothed probabilities, the emotion timeline and a status bar.
Importing this package imports Textual; the headless paths of the CLI never do.

Modules: ``app`` (the app and its handlers), ``messages`` (one Textual message per session
event), ``widgets`` (header, meter, panels, status bar), ``timeline``, ``screens`` (key help,
error box), ``palette`` (Rich styles over :mod:`stream_ser.display`'s colours and letters).
"""

from .app import ListenApp, run_listen_app
from ..session import ListenSession, SessionOptions

__all__ = ["ListenApp", "ListenSession", "SessionOptions", "run_listen_app"]
