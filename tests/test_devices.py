"""Input devices: listing (PortAudio and PulseAudio sources, monitors marked), matching by index
or name, and ``stream-ser devices``."""

from __future__ import annotations

import json
import os
import stat
import sys
from types import SimpleNamespace

import pytest

from stream_ser.audio import devices as sources
from stream_ser.cli import main
from stream_ser.sources import AudioSourceError


def fake_portaudio(names: list[tuple[str, int, float]], default: int = 0) -> SimpleNamespace:
    devices = [{"name": n, "max_input_channels": ch, "default_samplerate": r, "hostapi": 0} for n, ch, r in names]
    return SimpleNamespace(query_hostapis=lambda: [{"name": "ALSA"}], query_devices=lambda: devices,
                           default=SimpleNamespace(device=(default, default)))


PULSE = [
    {"name": "alsa_input.usb-Logitech_USB_Headset-00.mono-fallback", "description": "USB Headset Mono", "channels": 1,
     "rate_hz": 48000, "is_monitor": False},
    {"name": "alsa_output.pci-0000_00_1f.3.analog-stereo.monitor", "description": "Monitor of Built-in Audio Analog Stereo",
     "channels": 2, "rate_hz": 44100, "is_monitor": True},
    {"name": "bluez_output.monitor", "description": "Monitor of Headphones", "channels": 2, "rate_hz": 48000,
     "is_monitor": True},
]


@pytest.fixture
def devices_env(monkeypatch):
    pa = fake_portaudio([("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 44100.0), ("USB Headset: Audio (hw:1,0)", 1, 48000.0),
                         ("Loopback: PCM (hw:2,0)", 2, 48000.0), ("pulse", 32, 44100.0), ("default", 32, 44100.0)], default=4)
    monkeypatch.setattr(sources, "_sounddevice", lambda: pa)
    monkeypatch.setattr(sources, "list_pulse_sources", lambda: PULSE)


def test_device_matching(devices_env) -> None:
    find = sources.find_input_device
    assert find(None).name == "default" and find(1).name.startswith("USB Headset") and find("1").index == 1
    assert find("Monitor of Built-in").pulse_source.endswith("analog-stereo.monitor")
    assert find("bluez_output").name == "Monitor of Headphones"  # by PulseAudio source name too
    assert find("usb headset").index == 1  # one PortAudio device matches: chosen, as before
    with pytest.raises(AudioSourceError) as exc:
        find("Monitor of")
    assert "matches several input devices" in str(exc.value)
    assert "Monitor of Built-in Audio Analog Stereo [alsa_output" in str(exc.value) and "Monitor of Headphones" in str(exc.value)
    with pytest.raises(AudioSourceError, match="no input device matches 'Zoom'"):
        find("Zoom")
    with pytest.raises(AudioSourceError, match="device 9 is not an input device"):
        find(9)
    listed = sources.list_input_devices()
    assert [d.is_monitor for d in listed] == [False, False, True, False, False, False, True, True]
    pulse_dev = [d for d in listed if d.pulse_source][0]
    assert pulse_dev.index == 3 and pulse_dev.display_index == "-"  # opened through ALSA's pulse device


def test_devices_command_marks_monitors(devices_env, capsys) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ")[-1].strip(): line for line in out.splitlines()}
    monitor = next(line for line in out.splitlines() if "Monitor of Headphones" in line)
    assert " monitor " in monitor and "48000" in monitor and "PulseAudio" in monitor and "[bluez_output.monitor]" in monitor
    assert " monitor " in next(line for line in out.splitlines() if "Loopback: PCM" in line)
    assert " input " in next(line for line in out.splitlines() if "USB Headset: Audio" in line)
    assert "--device A --device B" in out and lines


def test_pulse_sources_from_pactl(tmp_path, monkeypatch) -> None:
    """``pactl -f json list sources`` is parsed (with a fallback to the short listing)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PulseAudio sources are listed on Linux only")
    doc = [{"name": "virt.monitor", "description": "Monitor of VirtualMic", "sample_specification": "s16le 2ch 48000Hz",
            "properties": {"device.class": "monitor"}},
           {"name": "mic", "description": "Mic", "sample_specification": "float32le 1ch 44100Hz", "properties": {}}]
    pactl = tmp_path / "pactl"
    pactl.write_text("#!/bin/sh\nif [ \"$1\" = -f ]; then cat <<'EOF'\n" + json.dumps(doc) + "\nEOF\nelse exit 1; fi\n")
    pactl.chmod(pactl.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    got = sources.list_pulse_sources()
    assert got == [
        {"name": "virt.monitor", "description": "Monitor of VirtualMic", "channels": 2, "rate_hz": 48000, "is_monitor": True},
        {"name": "mic", "description": "Mic", "channels": 1, "rate_hz": 44100, "is_monitor": False},
    ]
    pactl.write_text("#!/bin/sh\nif [ \"$1\" = -f ]; then exit 1; fi\n"
                     "printf '0\\tvirt.monitor\\tmodule-null-sink.c\\ts16le 2ch 48000Hz\\tIDLE\\n'\n")
    assert sources.list_pulse_sources() == [
        {"name": "virt.monitor", "description": "virt.monitor", "channels": 2, "rate_hz": 48000, "is_monitor": True}
    ]
