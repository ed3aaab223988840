"""Live capture through a real PortAudio input stream, fed by a PulseAudio virtual microphone.

``tests/virtual_mic.sh`` starts (or reuses) a PulseAudio daemon with a null sink ``virt`` whose
monitor is the default source. PortAudio's ALSA host API reaches it through the ALSA ``pulse``
plugin, so a clip played into ``virt`` with ``paplay`` is what
:class:`~stream_ser.audio.capture.CaptureSource` captures. No sound card is needed.

When the virtual microphone cannot be set up (no ``pulseaudio``, no PortAudio, not root for the
apt install, ...) the tests are skipped with the reason, unless ``STREAM_SER_REQUIRE_AUDIO`` is
set (to anything but ``""``, ``0``, ``false``, ``no``; CI sets ``1``): then they fail.

PortAudio enumerates devices when it is initialised (on ``import sounddevice``), and the ALSA
``pulse`` device only exists while a PulseAudio server is reachable through ``PULSE_SERVER``.
The fixture therefore sets ``PULSE_SERVER`` first and, if ``sounddevice`` was already imported
by an earlier test, re-initialises PortAudio (``sounddevice._terminate()`` /
``sounddevice._initialize()``) so that it enumerates again.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ListenProcess

pytestmark = pytest.mark.audio

REQUIRE_AUDIO_ENV = "STREAM_SER_REQUIRE_AUDIO"
SCRIPT = Path(__file__).resolve().parent / "virtual_mic.sh"
SINK = "virt"
CLIP = Path("ravdess") / "Actor_21" / "03-01-05-02-01-01-21.flac"  # ~4.4 s, angry
SETUP_TIMEOUT_S = 300.0  # generous: the script may apt-get install the packages first


def _audio_required() -> bool:
    return os.environ.get(REQUIRE_AUDIO_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _audio_required():
        pytest.fail(f"virtual microphone unavailable: {reason}; {REQUIRE_AUDIO_ENV} is set, so this is an error",
                    pytrace=False)
    pytest.skip(f"virtual microphone unavailable: {reason} (set {REQUIRE_AUDIO_ENV}=1 to fail instead)")


def _run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, env=env
    )


def _reinit_portaudio() -> None:
    """Make PortAudio enumerate devices again if sounddevice is already initialised.

    python-sounddevice initialises PortAudio at import; ``_terminate``/``_initialize`` are the
    module's own (private) helpers for exactly this, also used by its ``_exit_handler``.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()


@dataclass(frozen=True)
class VirtualMic:
    pulse_server: str
    sink: str
    state_dir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PULSE_SERVER": self.pulse_server}

    def play(self, path: Path) -> subprocess.Popen[bytes]:
        """Start ``paplay`` of ``path`` into the sink (FLAC is read by libsndfile)."""
        return subprocess.Popen(
            ["paplay", f"--device={self.sink}", str(path)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


@pytest.fixture(scope="module")
def virtual_mic() -> Iterator[VirtualMic]:
    """Start (or reuse) the virtual microphone and point this process's PortAudio at it.

    A daemon this fixture started is stopped at teardown; one that was already running is left.
    """
    if shutil.which("bash") is None:
        _unavailable("bash not found")
    state = Path(os.environ.get("VMIC_STATE", "/tmp/stream-ser-vmic"))
    try:
        proc = _run_script("start")
    except subprocess.TimeoutExpired:
        _unavailable(f"{SCRIPT.name} did not finish within {SETUP_TIMEOUT_S:.0f} s")
    if proc.returncode != 0:
        _unavailable(f"{SCRIPT.name} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    exports = [ln for ln in proc.stdout.splitlines() if ln.startswith("export PULSE_SERVER=")]
    if not exports:
        _unavailable(f"{SCRIPT.name} printed no 'export PULSE_SERVER=' line: {proc.stdout!r}")
    server = exports[-1].split("=", 1)[1].strip()
    started_here = "reusing" not in proc.stderr

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_SERVER", server)
        try:
            _reinit_portaudio()
            yield VirtualMic(server, SINK, state)
        finally:
            mp.undo()
            if started_here:
                _run_script("stop")
            _reinit_portaudio()


@pytest.fixture(scope="module")
def clip(data_dir: Path) -> Path:
    path = data_dir / CLIP
    if not path.is_file():
        pytest.fail(f"{path} missing from the data folder", pytrace=False)
    return path


def _max_normalised_xcorr(signal: np.ndarray, template: np.ndarray) -> tuple[float, int]:
    """Peak over lags of the normalised cross-correlation of ``template`` sliding along ``signal``.

    At lag k: <signal[k:k+n], template> / (|signal[k:k+n]| |template|), in [-1, 1]; lags where
    the template overhangs the signal's end are scored against the zero-padded signal.
    """
    t = template.astype(np.float64) - template.mean()
    n = t.size
    s = np.concatenate([signal.astype(np.float64), np.zeros(n)])
    size = 1 << int(np.ceil(np.log2(s.size + n)))
    num = np.fft.irfft(np.fft.rfft(s, size) * np.conj(np.fft.rfft(t, size)), size)[: s.size - n + 1]
    c = np.concatenate([[0.0], np.cumsum(s * s)])
    energy = c[n:] - c[:-n]
    den = np.sqrt(np.maximum(energy, 1e-12)) * np.linalg.norm(t)
    score = num / den
    score[energy < 1e-6 * n] = 0.0  # silent stretches: no match
    k = int(np.argmax(score))
    return float(score[k]), k


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


# --------------------------------------------------------------------------------------------


def test_setup_is_idempotent(virtual_mic: VirtualMic) -> None:
    proc = _run_script("start", env=virtual_mic.env())
    assert proc.returncode == 0, proc.stderr
    assert "reusing" in proc.stderr, proc.stderr
    assert f"export PULSE_SERVER={virtual_mic.pulse_server}" in proc.stdout
    assert _run_script("status").returncode == 0


def test_default_input_device_is_listed(virtual_mic: VirtualMic) -> None:
    from stream_ser.audio import find_input_device, list_input_devices

    devices = list_input_devices()
    assert devices, "PortAudio lists no input devices although PULSE_SERVER is set"
    names = [d.name for d in devices]
    assert any(d.is_default for d in devices) or any(n in ("default", "pulse") for n in names), names
    chosen = find_input_device(None)
    assert chosen.is_default or chosen.name in ("default", "pulse"), chosen
    assert "pulse" in names or "default" in names, names


def test_capture_real_clip_through_portaudio(virtual_mic: VirtualMic, clip: Path) -> None:
    from stream_ser.engine import Engine
    from stream_ser.model import EmotionModel
    from stream_ser.audio import CaptureSource, load_audio

    model = EmotionModel()
    sr = model.feature_config.sample_rate_hz
    reference = load_audio(clip, sr)
    engine = Engine(model, source="virtual-mic")
    # Warm the feature pipeline (numba) before capturing, so the consumer never lags.
    engine_warm = Engine(model)
    engine_warm.push(np.zeros(model.feature_config.window_samples, dtype=np.float32))
    engine_warm.flush()

    threads_before = set(threading.enumerate())
    source = CaptureSource.from_device(sample_rate_hz=sr)
    assert source.name.startswith("mic:") and source.is_device
    captured: list[np.ndarray] = []
    preds = []
    watchdog = threading.Timer(20.0, source.stop)  # a broken setup fails instead of hanging
    watchdog.daemon = True
    player: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    try:
        source.start()
        watchdog.start()
        player_done_at: float | None = None
        for chunk in source.chunks():
            captured.append(chunk)
            preds.extend(engine.push(chunk))
            now = time.monotonic()
            if player is None and now - t0 > 0.5:
                player = virtual_mic.play(clip)
            elif player is not None and player_done_at is None and player.poll() is not None:
                player_done_at = now
            if player_done_at is not None and now - player_done_at > 0.7:
                source.stop()
        preds.extend(engine.flush())
    finally:
        watchdog.cancel()
        source.close()
        if player is not None and player.poll() is None:
            player.kill()
        if player is not None:
            player.wait(timeout=5)
    elapsed = time.monotonic() - t0

    assert player is not None, "no audio arrived from the input stream, so the clip was never played"
    assert player.returncode == 0, f"paplay failed: {player.stderr.read().decode() if player.stderr else ''}"
    assert elapsed < 20.0, f"capture did not end on its own (watchdog fired after {elapsed:.1f} s)"
    audio = np.concatenate(captured)
    duration = audio.size / sr
    assert duration > reference.size / sr, f"captured only {duration:.2f} s"

    level = _rms(audio)
    assert level > 1e-3, f"captured audio is (near) silent: RMS {level:.2e}"
    assert level > 0.2 * _rms(reference), f"captured RMS {level:.3g} vs clip RMS {_rms(reference):.3g}"

    score, lag = _max_normalised_xcorr(audio, reference)
    assert score > 0.5, f"captured audio does not match the clip: peak normalised xcorr {score:.2f}"

    speech = [p for p in preds if p.is_speech]
    assert speech, f"no speech window among {len(preds)} predictions"
    assert all(p.label in model.labels for p in speech)
    # The speech windows overlap the clip's position in the capture.
    clip_start, clip_end = lag / sr, (lag + reference.size) / sr
    assert any(clip_start < p.end_s <= clip_end + model.feature_config.window_s for p in speech)

    assert source.dropped_frames == 0
    watchdog.join(timeout=2)
    lingering = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not lingering, f"threads left running: {lingering}"


def test_cli_listen_end_to_end(virtual_mic: VirtualMic, clip: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "session.csv"
    listen = ListenProcess(["--duration", "8", "--csv", str(out_csv)], virtual_mic.env())
    proc = listen.proc
    player = None
    try:
        assert listen.listening.wait(60), "stream-ser listen never started listening"
        time.sleep(0.5)
        player = virtual_mic.play(clip)
        stdout, _ = proc.communicate(timeout=30)
        assert player.wait(timeout=10) == 0
    finally:
        for p in (proc, player):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=5)
    stderr = listen.join_reader()

    assert proc.returncode == 0, f"exit {proc.returncode}\n{stderr}"
    assert "listening to mic:" in stderr, stderr
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) >= 10, f"expected ~16 prediction lines for 8 s at hop 0.5 s, got:\n{stdout}"
    assert any("(no speech)" not in ln for ln in lines), stdout

    with out_csv.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[:7] == ["source", "channel", "start_s", "end_s", "speech", "label", "confidence"], header
    assert len(body) == len(lines), (len(body), len(lines))
    speech_rows = [r for r in body if r[header.index("speech")] == "1"]
    assert speech_rows, f"no row with speech=1 in\n{out_csv.read_text()}"
    assert all(r[header.index("label")] for r in speech_rows)
    assert float(body[-1][header.index("end_s")]) == pytest.approx(8.0, abs=0.01)
