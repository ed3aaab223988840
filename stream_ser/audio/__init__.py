"""Audio sources: files, input devices and several devices at once, as frames at the model's rate.

Position in the pipeline: the first stage. Every source follows one contract,
:class:`~stream_ser.audio.source.Source`: a name, the channels it delivers and what each is, its
native rates, whether it is a live device, ``frames()`` (float32 ``(n, channels)`` at the model's
16 kHz), ``start``/``stop``/``close``, its health (``failure``) and counters (``stats``). The
engines consume the frames, one engine per channel.

Modules::

    source.py    the Source protocol, SourceStats, AudioSourceError
    channels.py  which channels are scored (--channels): parsing, checking, taking them
    resample.py  native rates accepted, and soxr's streaming resampler to the model's rate
    files.py     audio files: header facts, block-by-block decoding, FileSource (analyse)
    devices.py   input devices (PortAudio, PulseAudio sources) and DeviceInput, what capture opens
    replay.py    FileReplay: a file played through the capture path at real-time pace (listen --input)
    capture.py   InputCapture (one stream and its ring buffer) and CaptureSource (listen)
    clocks.py    device clocks measured and aligned (ClockFit, ClockAligner)
    multi.py     MultiDeviceSource: several devices as the channels of one stream

Any native format is accepted: 8-192 kHz, 1-8 channels scored on their own (more are averaged or
selected), 16/24-bit integer or float samples (libsndfile and PortAudio convert them to float32),
resampled with soxr's streaming resampler, whose chunked output equals the whole-signal result.
"""

from .capture import DEFAULT_BLOCK_S, CaptureInput, CaptureSource, InputCapture
from .channels import (
    MAX_CHANNELS,
    ChannelSelection,
    describe_channels,
    downmix,
    parse_channel_selection,
    resolve_channels,
    select_channels,
)
from .clocks import ClockAligner, ClockFit, DeviceClock
from .devices import DeviceInput, InputDevice, find_input_device, list_input_devices, list_pulse_sources
from .files import DEFAULT_FILE_BLOCK_FRAMES, AudioInfo, FileSource, audio_info, iter_file_chunks, iter_file_frames, load_audio
from .multi import MultiDeviceSource
from .replay import FileInputStream, FileReplay
from .resample import NATIVE_SAMPLE_RATE_RANGE_HZ, RESAMPLER_QUALITY, native_rate_problem, resampler
from .source import AudioSourceError, Source, SourceStats

__all__ = [
    "DEFAULT_BLOCK_S",
    "DEFAULT_FILE_BLOCK_FRAMES",
    "MAX_CHANNELS",
    "NATIVE_SAMPLE_RATE_RANGE_HZ",
    "RESAMPLER_QUALITY",
    "AudioInfo",
    "AudioSourceError",
    "CaptureInput",
    "CaptureSource",
    "ChannelSelection",
    "ClockAligner",
    "ClockFit",
    "DeviceClock",
    "DeviceInput",
    "FileInputStream",
    "FileReplay",
    "FileSource",
    "InputCapture",
    "InputDevice",
    "MultiDeviceSource",
    "Source",
    "SourceStats",
    "audio_info",
    "describe_channels",
    "downmix",
    "find_input_device",
    "iter_file_chunks",
    "iter_file_frames",
    "list_input_devices",
    "list_pulse_sources",
    "load_audio",
    "native_rate_problem",
    "parse_channel_selection",
    "resampler",
    "resolve_channels",
    "select_channels",
]
