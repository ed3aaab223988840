"""Input devices: listing them (PortAudio and PulseAudio), choosing one, and opening its stream.

Position in the pipeline: what :class:`~stream_ser.audio.capture.CaptureSource` opens. Devices
(:func:`list_input_devices`) are PortAudio's, plus, on Linux with PulseAudio or PipeWire
(``pipewire-pulse``), every PulseAudio source listed by ``pactl`` (monitors of outputs included),
opened through ALSA's ``pulse`` device with the source chosen by ``PULSE_SOURCE`` at open time.
A device to capture from is a :class:`DeviceInput`: the device, its name and native rate, the
channels to open, and the stream (``sounddevice.InputStream``, or a stand-in a test injects).

Device lookups and PortAudio are reached through this module's functions
(:func:`find_input_device`, :func:`list_input_devices`, ``_sounddevice``), which tests replace to
simulate machines with other devices.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .channels import MAX_CHANNELS, ChannelSelection, resolve_channels
from .resample import native_rate_problem
from .source import AudioSourceError

log = logging.getLogger(__name__)


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a clear error."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise AudioSourceError(
            f"PortAudio is not available ({exc}); on Debian/Ubuntu: apt-get install libportaudio2"
        ) from None
    return sd


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio (or PulseAudio) reports it.

    Attributes:
        index: PortAudio device index to open; for a PulseAudio source, the index of ALSA's
            ``pulse`` device through which it is opened.
        name: Device name (for a PulseAudio source, its description, e.g. ``Monitor of
            Built-in Audio``).
        hostapi: Host API name (ALSA, Core Audio, ...; ``PulseAudio`` for a PulseAudio source).
        max_input_channels: Input channels (a PulseAudio source: its native channel count).
        default_sample_rate_hz: The device's default (native) sample rate (Hz).
        is_default: True for the default input device.
        is_monitor: True for a source that carries what the computer plays: a PulseAudio/PipeWire
            monitor, or a loopback device recognised by name (BlackHole, VB-Cable, Stereo Mix,
            Loopback, Soundflower, "What U Hear", names with "monitor"): the other side of a call.
        pulse_source: The PulseAudio source name (``alsa_output....monitor``) when the device is a
            PulseAudio source opened through ALSA's ``pulse`` device; None for PortAudio devices.
    """

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_sample_rate_hz: float
    is_default: bool
    is_monitor: bool = False
    pulse_source: str | None = None

    @property
    def display_index(self) -> str:
        """The index as ``stream-ser devices`` prints it (``-`` for a PulseAudio source, which is
        chosen by name)."""
        return "-" if self.pulse_source else str(self.index)


#: Names of loopback devices that carry what the computer plays (macOS, Windows, Linux ALSA).
LOOPBACK_NAME = re.compile(
    r"monitor|loopback|stereo mix|what u hear|wave out|blackhole|soundflower|vb-audio|cable output|"
    r"voicemeeter out|wasapi loopback",
    re.IGNORECASE,
)


def _is_loopback_name(name: str) -> bool:
    return bool(LOOPBACK_NAME.search(name))


#: Longest wait (s) for ``pactl`` when listing PulseAudio sources.
PACTL_TIMEOUT_S = 3.0


def list_pulse_sources() -> list[dict[str, Any]]:
    """PulseAudio (or PipeWire's pulse server) sources, via ``pactl``.

    Returns:
        One dict per source: ``name`` (PulseAudio source name), ``description``, ``channels``,
        ``rate_hz`` and ``is_monitor``; empty when ``pactl`` is missing, no server answers, or
        not on Linux. ``pactl -f json`` (PulseAudio >= 16, PipeWire) is used when available,
        else ``pactl list short sources`` (descriptions are then the source names).

    Thread: any (runs a subprocess; a few milliseconds).
    """
    if not sys.platform.startswith("linux") or shutil.which("pactl") is None:
        return []
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = subprocess.run(["pactl", "-f", "json", "list", "sources"], capture_output=True, text=True,
                              timeout=PACTL_TIMEOUT_S, env=env)
        if proc.returncode == 0 and proc.stdout.lstrip().startswith("["):
            out = []
            for src in json.loads(proc.stdout):
                spec = str(src.get("sample_specification", ""))
                m = re.search(r"(\d+)ch (\d+)Hz", spec)
                props = src.get("properties") or {}
                name = str(src.get("name", ""))
                out.append({
                    "name": name,
                    "description": str(src.get("description") or props.get("device.description") or name),
                    "channels": int(m.group(1)) if m else 2,
                    "rate_hz": int(m.group(2)) if m else 48000,
                    "is_monitor": props.get("device.class") == "monitor" or name.endswith(".monitor"),
                })
            return out
        proc = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True,
                              timeout=PACTL_TIMEOUT_S, env=env)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.debug("pactl failed: %s", exc)
        return []
    if proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        m = re.search(r"(\d+)ch (\d+)Hz", fields[3])
        out.append({"name": fields[1], "description": fields[1], "channels": int(m.group(1)) if m else 2,
                    "rate_hz": int(m.group(2)) if m else 48000, "is_monitor": fields[1].endswith(".monitor")})
    return out


def list_input_devices(include_pulse_sources: bool = True) -> list[InputDevice]:
    """All devices with at least one input channel.

    Args:
        include_pulse_sources: Also list PulseAudio sources (:func:`list_pulse_sources`), when
            PortAudio has ALSA's ``pulse`` device to open them through.

    Returns:
        PortAudio's input devices in index order, then the PulseAudio sources.

    Raises:
        AudioSourceError: If PortAudio is missing.
    """
    sd = _sounddevice()
    hostapis = sd.query_hostapis()
    try:
        default_in = sd.default.device[0]
    except Exception:  # sounddevice raises PortAudioError subclasses here
        default_in = -1
    out = []
    pulse_index: int | None = None
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            hostapi = hostapis[d["hostapi"]]["name"]
            if d["name"] == "pulse" and "ALSA" in hostapi:
                pulse_index = i
            out.append(
                InputDevice(
                    i,
                    d["name"],
                    hostapi,
                    int(d["max_input_channels"]),
                    float(d["default_samplerate"]),
                    i == default_in,
                    _is_loopback_name(d["name"]),
                )
            )
    if include_pulse_sources and pulse_index is not None:
        for src in list_pulse_sources():
            out.append(
                InputDevice(pulse_index, src["description"], "PulseAudio", src["channels"], float(src["rate_hz"]),
                            False, src["is_monitor"], src["name"])
            )
    return out


def find_input_device(spec: str | int | None) -> InputDevice:
    """Choose an input device by index, by name (exact, else unique substring), or the default.

    A name is matched against PortAudio's device names and PulseAudio's source descriptions and
    source names (``Monitor of Speakers``, ``alsa_output.pci-0000_00_1f.3.analog-stereo.monitor``).

    A substring that matches exactly one PortAudio device chooses it even if PulseAudio
    sources match too (so a name that worked before PulseAudio sources were listed still does).

    Args:
        spec: An index (int or digit string), a name or case-insensitive name substring, or
            None for the default input device.

    Raises:
        AudioSourceError: No input devices; index out of range or not an input; no name
            matches; several names match (the message lists them).
    """
    by_name = not (spec is None or isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()))
    devices = list_input_devices(include_pulse_sources=by_name)
    if not devices:
        raise AudioSourceError("no input devices found (is a microphone connected? run `stream-ser devices`)")
    if spec is None:
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    if not by_name:
        index = int(spec)
        for d in devices:
            if d.index == index and d.pulse_source is None:
                return d
        raise AudioSourceError(f"device {index} is not an input device (run `stream-ser devices`)")
    assert isinstance(spec, str)
    exact = [d for d in devices if spec in (d.name, d.pulse_source)]
    if exact:
        return exact[0]
    needle = spec.lower()
    matches = [d for d in devices if needle in d.name.lower() or needle in (d.pulse_source or "").lower()]
    portaudio_matches = [d for d in matches if d.pulse_source is None]
    if len(portaudio_matches) == 1:  # PortAudio's own devices first, as before PulseAudio sources were listed
        return portaudio_matches[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioSourceError(f"no input device matches {spec!r} (run `stream-ser devices`)")
    listing = "; ".join(f"{d.index}: {d.name}" if d.pulse_source is None else f"{d.name} [{d.pulse_source}]"
                        for d in matches)
    raise AudioSourceError(f"{spec!r} matches several input devices ({listing}); give an index or a longer name")


#: Serialises stream opening while ``PULSE_SOURCE`` is set for one PulseAudio source.
_PULSE_ENV_LOCK = threading.Lock()


def _open_stream(factory: Callable[..., Any], device: InputDevice, **kwargs: Any) -> Any:
    """Open an input stream; a PulseAudio source is opened through ALSA's ``pulse`` device with
    ``PULSE_SOURCE`` naming the source while the stream is opened (the ALSA plugin reads it when
    it connects, as documented for libpulse clients), then restored."""
    if device.pulse_source is None:
        return factory(device=device.index, **kwargs)
    with _PULSE_ENV_LOCK:
        old = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = device.pulse_source
        try:
            return factory(device=device.index, **kwargs)
        finally:
            if old is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = old


class DeviceInput:
    """An input device to capture from (a :class:`~stream_ser.audio.capture.CaptureInput`): a
    microphone, a monitor of what the computer plays, or a loopback device.

    Args:
        device: The device (see :func:`find_input_device`).
        stream_factory: Makes the input stream instead of ``sounddevice.InputStream``; called
            with the keyword arguments ``device, samplerate, channels, dtype, blocksize, callback,
            finished_callback``. Tests inject stand-in streams here to simulate devices and their
            faults. None: PortAudio's.

    Attributes:
        device: As given.
        name: ``mic:<device name>``.
        native_rate_hz: The device's default sample rate (Hz), at which it is opened.
        is_device: True.

    Raises:
        AudioSourceError: The device's rate is outside
            :data:`~stream_ser.audio.resample.NATIVE_SAMPLE_RATE_RANGE_HZ`, or (``stream_factory``
            None) PortAudio is missing.
    """

    is_device = True

    def __init__(self, device: InputDevice, stream_factory: Callable[..., Any] | None = None) -> None:
        self.device = device
        self.name = f"mic:{device.name}"
        self._factory = stream_factory if stream_factory is not None else _sounddevice().InputStream
        self.native_rate_hz = int(device.default_sample_rate_hz)
        problem = native_rate_problem(self.native_rate_hz)
        if problem:
            raise AudioSourceError(f"input device {device.display_index} ({device.name}): {problem}")

    @classmethod
    def find(cls, spec: str | int | InputDevice | None = None,
             stream_factory: Callable[..., Any] | None = None) -> "DeviceInput":
        """The device given, or the one :func:`find_input_device` chooses for an index, a name
        (substring) or None (the default input).

        Raises:
            AudioSourceError: As :func:`find_input_device` and the constructor.
        """
        if isinstance(spec, InputDevice):
            return cls(spec, stream_factory)
        factory = stream_factory if stream_factory is not None else _sounddevice().InputStream
        return cls(find_input_device(spec), factory)

    def plan_channels(self, selection: ChannelSelection) -> tuple[tuple[int, ...], int]:
        """The channel numbers scored and how many channels to open.

        None opens one channel (PortAudio mixes or picks it), scored as channel 0; otherwise as
        many channels as the highest selected (``all``: every channel the device offers, at most
        :data:`~stream_ser.audio.channels.MAX_CHANNELS`; ALSA's ``pulse``/``default`` devices
        report 32, so give numbers there).

        Raises:
            AudioSourceError: A selected channel the device does not offer.
        """
        if selection is None:
            return (0,), 1
        offered = max(1, min(self.device.max_input_channels, MAX_CHANNELS))
        numbers = resolve_channels(selection, offered, self.name)
        return numbers, offered if selection == "all" else max(numbers)

    def open(self, *, channels: int, blocksize: int, callback: Callable[..., None],
             finished_callback: Callable[[], None], ready: Callable[[], bool]) -> Any:
        """Open the device's input stream at its native rate, float32 (``ready`` is not used: a
        device does not wait for its consumer).

        Raises:
            AudioSourceError: The stream cannot be opened (unsupported rate or channels, device
                busy), naming the device, rate and channels.
        """
        try:
            return _open_stream(self._factory, self.device, samplerate=self.native_rate_hz, channels=channels,
                                dtype="float32", blocksize=blocksize, callback=callback,
                                finished_callback=finished_callback)
        except Exception as exc:  # sounddevice.PortAudioError and ValueError for bad settings
            raise AudioSourceError(
                f"cannot open input device {self.device.display_index} ({self.device.name}) at "
                f"{self.native_rate_hz} Hz, {channels} channel(s): {exc}"
            ) from None

    def end_failure(self, stream: Any, stop_requested: bool) -> str | None:
        """Why the stream ended: a device's stream ends only when asked, else it vanished."""
        if stop_requested:
            return None
        return f"{self.name}: the input stream ended unexpectedly (device disconnected?)"
