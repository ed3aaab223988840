"""The non-speech sound set for the VAD evaluation: real recordings from Debian packages, plus
synthetic noises made in code.

Real recordings come from five Debian (bookworm) packages of free game music, game sound effects
and desktop sounds, pinned to exact versions and SHA-256 sums (:data:`DEBS`). ``apt-get download``
fetches them and ``dpkg-deb -x`` unpacks them (:func:`fetch_debs`); every file is decoded with
soundfile, mixed down to mono and resampled to 16 kHz with soxr (:func:`load_16k`). Each file is
put in a class by its path (:func:`catalogue`):

========  ======================================================================================
class     what
========  ======================================================================================
music     game soundtracks: Wesnoth (orchestral), HyperRogue (ambient/electronic), SuperTux
          (chiptune/pop); tracks with a choir or voice left out
effects   game sound effects: SuperTux, HyperRogue (voices, grunts and spoken words left out)
ui        desktop sounds of the freedesktop sound theme (the spoken channel names left out)
ambient   recorded noise-like sounds: rain, waterfall, lava, fire, steam, splashes, storm
========  ======================================================================================

and synthetic classes generated with a fixed seed (:func:`synthetic`): ``white_noise``,
``pink_noise``, ``brown_noise`` (fan-like rumble), ``hum`` (50/60 Hz mains and harmonics),
``typing`` (keyboard-like clicks), ``tones`` (pure tones), ``square`` (square waves) and
``dc_silence`` (silence with a DC offset).

Every file is in the development part or the test part by a hash of its path (a third
development, two thirds test), so the window rule is chosen on other recordings than it is
reported on; synthetic classes use different seeds for the two parts.

The committed test fixtures (``tests/fixtures/nonspeech/``) are a few seconds cut from files
whose licence allows redistribution with attribution (CC0, CC BY 3.0, CC BY-SA 3.0);
``python -m training.vad_sounds fixtures`` rebuilds them from the packages
(:data:`FIXTURES`).

    python -m training.vad_sounds fetch [--debs /tmp/stream-ser-debs]      # download + unpack
    python -m training.vad_sounds list                                     # class, part, file
    python -m training.vad_sounds fixtures [--out tests/fixtures/nonspeech]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000

DEFAULT_DEB_DIR = Path("/tmp/stream-ser-debs")


@dataclass(frozen=True)
class Deb:
    """One pinned Debian package: name, exact version, file name and SHA-256 of the ``.deb``."""

    package: str
    version: str
    filename: str
    sha256: str
    licence: str


#: The packages of the set, as downloaded from Debian bookworm on 2026-12-05 (``apt-get download
#: PACKAGE=VERSION``). ``licence`` summarises ``/usr/share/doc/PACKAGE/copyright`` for the audio.
#: (``fb-music-high`` was looked at too: its only audio is one tracker module, ``.xm``, which
#: libsndfile cannot decode, so it is not used.)
DEBS: tuple[Deb, ...] = (
    Deb("wesnoth-1.16-music", "1:1.16.9-1", "wesnoth-1.16-music_1%3a1.16.9-1_all.deb",
        "f9bc3cde92b4ab30db5d7b85f89b4bcc3d788dd92602956d0347250850bf59bb",
        "GPL-2+ (Wesnoth authors)"),
    Deb("hyperrogue-music", "12.0q-1", "hyperrogue-music_12.0q-1_all.deb",
        "61ab9f4c2169442d85f42c42d26e80c1a18b93c741f3d44f1b9d83015904e7f7",
        "music CC-BY-SA-3.0 (Shawn Parrotte, Lincoln Domina, Will Savino); sounds CC0-1.0, "
        "CC-BY-3.0 or CC-BY-SA-4.0 per file (sounds/credits.txt)"),
    Deb("supertux-data", "0.6.3-2", "supertux-data_0.6.3-2_all.deb",
        "a6ad8865972f1dbb5e7b49f4e1b381dd16a68f3028a3502cfeaca2400285d27f",
        "sounds GPL-3+ (SuperTux Devel Team); music GPL-2+ (Marek Moeckel)"),
    Deb("sound-theme-freedesktop", "0.8-2", "sound-theme-freedesktop_0.8-2_all.deb",
        "135cc4893ba590d428577bc3bf42df756a165c05a2a43f84311ad7db779a70ea",
        "CC-BY-3.0, CC-BY-SA-3.0, GPL-2 or GPL-2+ per file"),
)

_ROOTS = {
    "wesnoth-1.16-music": "usr/share/games/wesnoth/1.16/data/core/music",
    "hyperrogue-music": "usr/share/hyperrogue",
    "supertux-data": "usr/share/games/supertux2",
    "sound-theme-freedesktop": "usr/share/sounds/freedesktop/stereo",
}

#: Files left out of the non-speech set because they hold a human voice (singing, speech,
#: grunts, spoken words), are silent, or are empty. Paths relative to the package root above.
EXCLUDED: dict[str, frozenset[str]] = {
    "wesnoth-1.16-music": frozenset({
        "nunc_dimittis.ogg",  # a choral piece (sung voice)
        "silence.ogg",  # 10 s of silence
    }),
    "supertux-data": frozenset({
        "sounds/excellent.wav", "sounds/welldone.ogg", "sounds/grunts.ogg",  # voice
        "sounds/yeti_gna.wav", "sounds/yeti_roar.wav", "sounds/yeti_finish.ogg",  # voiced creature
        "sounds/empty.wav",  # empty
        "music/antarctic/voc-boss.ogg", "music/antarctic/voc-dark.ogg",  # "voc": may hold voice
        "music/antarctic/voc-daytime.ogg", "music/antarctic/voc-daytime2.ogg",
        "music/antarctic/voc-night.ogg",
    }),
    "hyperrogue-music": frozenset({
        f"sounds/{n}.ogg" for n in (
            "die-prince", "die-princess", "dzia-prince", "dzia-princess", "heal-prince",
            "heal-princess", "hit-prince", "hit-princess", "speak-prince", "speak-princess",
            "seen-cultist", "seen-cultistfire", "seen-cultistleader", "seen-necromancer",
            "seen-vizier", "seen-gardener", "seen-rosebeauty", "seen-fairy", "die-fairy",
            "message-troll", "seen-troll", "click", "pickup-scroll",  # voices; two near-empty
        )
    }),
    "sound-theme-freedesktop": frozenset({
        f"audio-channel-{n}.oga" for n in (
            "front-center", "front-left", "front-right", "rear-center", "rear-left", "rear-right",
            "side-left", "side-right")  # spoken channel names
    }),
}

_AMBIENT = {
    "supertux-data": {"sounds/rain.wav", "sounds/waterfall.wav", "sounds/lava.wav", "sounds/fire.ogg",
                      "sounds/sizzle.ogg", "sounds/flame.wav"},
    "hyperrogue-music": {"sounds/steamhiss.ogg", "sounds/storm.ogg", "sounds/seen-water.ogg",
                         "sounds/splash1.ogg", "sounds/splash2.ogg", "sounds/fire.ogg"},
}

AUDIO_SUFFIXES = (".ogg", ".oga", ".wav")

#: Real-recording classes and synthetic classes, in report order.
REAL_CLASSES = ("music", "effects", "ui", "ambient")
SYNTHETIC_CLASSES = ("white_noise", "pink_noise", "brown_noise", "hum", "typing", "tones", "square", "dc_silence")
#: The target each class is held to (false-positive windows): music 5 %, everything else 2 %.
TARGET_FP = {c: (0.05 if c == "music" else 0.02) for c in REAL_CLASSES + SYNTHETIC_CLASSES}


@dataclass(frozen=True)
class SoundFile:
    """One recording of the set: its class, part (``"dev"``/``"test"``), package and path."""

    cls: str
    part: str
    package: str
    rel: str  # path relative to the package root in _ROOTS
    path: Path  # the unpacked file


def fetch_debs(deb_dir: Path = DEFAULT_DEB_DIR) -> Path:
    """Download (if missing), check and unpack the pinned packages.

    Args:
        deb_dir: Folder for the ``.deb`` files; they are unpacked to ``deb_dir/x/PACKAGE/``.

    Returns:
        ``deb_dir``.

    Raises:
        RuntimeError: If ``apt-get download`` fails (run ``apt-get update`` first) or a file's
            SHA-256 differs from :data:`DEBS` (Debian served another build).
    """
    deb_dir.mkdir(parents=True, exist_ok=True)
    for d in DEBS:
        f = deb_dir / d.filename
        if not f.is_file():
            r = subprocess.run(["apt-get", "download", f"{d.package}={d.version}"], cwd=deb_dir,
                               capture_output=True, text=True)
            if r.returncode != 0 or not f.is_file():
                raise RuntimeError(f"apt-get download {d.package}={d.version} failed (try apt-get update): {r.stderr}")
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest != d.sha256:
            raise RuntimeError(f"{f}: SHA-256 {digest}, expected {d.sha256}")
        out = deb_dir / "x" / d.package
        if not (out / _ROOTS[d.package]).is_dir():
            out.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(f), str(out)], check=True)
    return deb_dir


def _part(package: str, rel: str) -> str:
    """``"dev"`` for a third of the files, ``"test"`` for the rest (a hash of the path)."""
    h = int(hashlib.sha1(f"{package}/{rel}".encode()).hexdigest()[:8], 16)
    return "dev" if h % 3 == 0 else "test"


def catalogue(deb_dir: Path = DEFAULT_DEB_DIR) -> list[SoundFile]:
    """Every file of the set with its class and part, sorted (needs :func:`fetch_debs` first).

    Raises:
        FileNotFoundError: If a package is not unpacked under ``deb_dir/x``.
    """
    out: list[SoundFile] = []
    for d in DEBS:
        root = deb_dir / "x" / d.package / _ROOTS[d.package]
        if not root.is_dir():
            raise FileNotFoundError(f"{root} missing: run `python -m training.vad_sounds fetch --debs {deb_dir}`")
        for p in sorted(root.rglob("*")):
            if p.suffix not in AUDIO_SUFFIXES or not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            if rel in EXCLUDED.get(d.package, ()) or rel.startswith("speech/"):
                continue
            if rel in _AMBIENT.get(d.package, ()):
                cls = "ambient"
            elif d.package == "sound-theme-freedesktop":
                cls = "ui"
            elif d.package == "wesnoth-1.16-music" or rel.startswith("music/"):
                cls = "music"
            elif rel.startswith("sounds/"):
                cls = "effects"
            else:
                continue
            out.append(SoundFile(cls, _part(d.package, rel), d.package, rel, p))
    return out


def load_16k(path: Path, start_s: float = 0.0, dur_s: float | None = None) -> np.ndarray:
    """A file (or an excerpt) as float32 mono at 16 kHz: soundfile decode, channel mean, soxr
    resampling (``VHQ``).

    Args:
        path: Any file libsndfile reads (Ogg Vorbis, WAV, FLAC).
        start_s: Excerpt start (s, in the file's time).
        dur_s: Excerpt length (s); None: to the end.

    Returns:
        float32 ``(n,)`` at 16 kHz.
    """
    import soundfile as sf
    import soxr

    info = sf.info(str(path))
    start = int(round(start_s * info.samplerate))
    stop = None if dur_s is None else start + int(round(dur_s * info.samplerate))
    x, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        x = soxr.resample(x, sr, SR, quality="VHQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def active_rms(x: np.ndarray) -> float:
    """RMS over the 25 ms frames (10 ms hop) within 30 dB of the loudest frame: the level of the
    sound itself, not of its silent tails (0.0 for silence)."""
    if x.size < 400:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    v = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 400)[::160]
    ms = np.mean(v * v, axis=1)
    top = ms.max()
    if top <= 0:
        return 0.0
    return float(np.sqrt(ms[ms >= top * 1e-3].mean()))


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled so its :func:`active_rms` is ``dbfs`` (dB re full scale), clipped to +-1."""
    r = active_rms(x)
    if r <= 0:
        return x.astype(np.float32)
    return np.clip(x * (10 ** (dbfs / 20) / r), -1, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# synthetic classes


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return (y / (np.sqrt(np.mean(y * y)) + 1e-12)).astype(np.float32)


def _fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    k = min(int(SR * ms / 1000), x.size // 2)
    if k:
        ramp = np.linspace(0, 1, k, dtype=np.float32)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def synthetic(cls: str, seconds: float, seed: int) -> np.ndarray:
    """One synthetic non-speech stream, float32 mono 16 kHz, levels from -45 to -15 dBFS.

    Args:
        cls: One of :data:`SYNTHETIC_CLASSES`:

            - ``white_noise``/``pink_noise``/``brown_noise``: 5 s segments of Gaussian noise with
              a 1/f**0, 1/f, 1/f**2 spectrum, each at its own level;
            - ``hum``: 50 or 60 Hz mains hum with 2-12 harmonics of random (decaying) amplitude
              and phase, over pink noise 30 dB lower, 5 s segments;
            - ``typing``: keyboard-like clicks (a press and a release 60-130 ms apart, each a
              2-5 ms decaying noise burst through a one-pole filter), bursts of 3-9 keys
              150-300 ms apart, pauses of 0.3-1.5 s between bursts;
            - ``tones``: pure tones of 100-4000 Hz (log-uniform), 0.5-4 s each, 10 ms fades,
              0-0.5 s gaps;
            - ``square``: square waves of 80-1000 Hz, 0.5-4 s each;
            - ``dc_silence``: a DC offset of +-0.01 to +-0.3 drifting slowly (+-0.002 at
              0.01-0.05 Hz, as a microphone's offset does), with Gaussian noise at -90 dBFS.
        seconds: Length (s).
        seed: Seed of :func:`numpy.random.default_rng`.

    Returns:
        float32 ``(round(seconds * 16000),)``.

    Raises:
        ValueError: For an unknown class.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    out = np.zeros(n, dtype=np.float32)
    seg = 5 * SR

    def level() -> float:
        return 10 ** (rng.uniform(-45, -15) / 20)

    if cls in ("white_noise", "pink_noise", "brown_noise"):
        e = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[cls]
        for s in range(0, n, seg):
            m = min(seg, n - s)
            out[s : s + m] = _coloured(rng, m, e) * level()
    elif cls == "hum":
        t = np.arange(seg) / SR
        for s in range(0, n, seg):
            m = min(seg, n - s)
            f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.998, 1.002)
            y = np.zeros(seg)
            for h in range(1, int(rng.integers(2, 13)) + 1):
                y += rng.uniform(0.2, 1.0) / h ** rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
            y /= np.sqrt(np.mean(y * y))
            y += _coloured(rng, seg, 1.0) * 10 ** (-30 / 20)
            out[s : s + m] = (y[:m] * level()).astype(np.float32)
    elif cls == "typing":
        pos, amp = 0, level()
        while pos < n:
            for _ in range(int(rng.integers(3, 10))):
                for part in (0, int(rng.uniform(0.06, 0.13) * SR)):
                    k = int(rng.uniform(0.002, 0.005) * SR) * 8
                    burst = rng.standard_normal(k) * np.exp(-np.arange(k) / (k / 8))
                    a = rng.uniform(0.2, 0.95)  # one-pole filter: low-pass (a>0) or high-pass
                    burst = np.array([0.0] + list(burst))
                    y = np.empty(k)
                    prev = 0.0
                    sign = rng.choice([-1.0, 1.0])
                    for i in range(k):
                        prev = (1 - a) * burst[i + 1] + sign * a * prev
                        y[i] = prev
                    y *= rng.uniform(0.3, 1.0) * amp * 8 / (np.abs(y).max() + 1e-12)
                    s = pos + part
                    if s + k <= n:
                        out[s : s + k] += y.astype(np.float32)
                pos += int(rng.uniform(0.15, 0.30) * SR)
            pos += int(rng.uniform(0.3, 1.5) * SR)
            if rng.random() < 0.2:
                amp = level()
    elif cls in ("tones", "square"):
        pos = 0
        while pos < n:
            m = min(int(rng.uniform(0.5, 4.0) * SR), n - pos)
            t = np.arange(m) / SR
            if cls == "tones":
                f = np.exp(rng.uniform(np.log(100), np.log(4000)))
                y = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            else:
                f = rng.uniform(80, 1000)
                y = np.sign(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)))
            out[pos : pos + m] = _fade((y * level() * (np.sqrt(2) if cls == "tones" else 1.0)).astype(np.float32))
            pos += m + int(rng.uniform(0, 0.5) * SR)
    elif cls == "dc_silence":
        t = np.arange(n) / SR
        dc = rng.choice([-1, 1]) * rng.uniform(0.01, 0.3)
        drift = 0.002 * np.sin(2 * np.pi * rng.uniform(0.01, 0.05) * t + rng.uniform(0, 2 * np.pi))
        out[:] = dc + drift + rng.standard_normal(n) * 10 ** (-90 / 20)
    else:
        raise ValueError(f"unknown synthetic class {cls!r}; one of {SYNTHETIC_CLASSES}")
    return np.clip(out, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# committed fixtures


@dataclass(frozen=True)
class FixturePart:
    """One excerpt of a packaged file that goes into a fixture."""

    package: str
    rel: str
    start_s: float
    dur_s: float
    copyright: str
    licence: str


#: The committed fixtures (``tests/fixtures/nonspeech/<name>.ogg``): excerpts joined with 0.25 s
#: of silence, 16 kHz mono Ogg Vorbis, each excerpt at its level in the package (mixed down),
#: the whole scaled down to a -3 dBFS peak if it is louder (:data:`FIXTURE_PEAK`).
FIXTURES: dict[str, tuple[FixturePart, ...]] = {
    "music_hyperrogue_caves": (
        FixturePart("hyperrogue-music", "music/hr3-caves.ogg", 20.0, 6.0,
                    "Shawn Parrotte (http://www.shawnparrotte.com)", "CC-BY-SA-3.0"),
    ),
    "music_hyperrogue_ocean": (
        FixturePart("hyperrogue-music", "music/hr-savino-ocean.ogg", 20.0, 6.0,
                    "Will Savino (http://www.willsavino.net)", "CC-BY-SA-3.0"),
    ),
    "effects_hyperrogue": tuple(
        FixturePart("hyperrogue-music", f"sounds/{n}", 0.0, d, "freesound.org user " + who, "CC0-1.0")
        for n, d, who in (
            ("explosion.ogg", 0.7, "rendensh (sound 105413)"),
            ("opengate.ogg", 1.1, "Qat (sound 107640)"),
            ("elementalgem.ogg", 2.0, "Varnsworth (sound 425165)"),
            ("steamhiss.ogg", 2.4, "toiletrolltube (sound 181488)"),
            ("pickup-mirror.ogg", 0.9, "wjl (sound 267889)"),
        )
    ),
    "ui_freedesktop": tuple(
        FixturePart("sound-theme-freedesktop", n, 0.0, d, "Dr. Richard Boulanger et al", "CC-BY-3.0")
        for n, d in (("complete.oga", 1.1), ("bell.oga", 0.1), ("trash-empty.oga", 1.1),
                     ("complete.oga", 1.1), ("bell.oga", 0.1), ("trash-empty.oga", 1.1))
    ),
}

FIXTURE_GAP_S = 0.25
#: Fixtures louder than this peak (-3 dBFS) are scaled down to it (Vorbis decoding overshoots).
FIXTURE_PEAK = 0.7


def build_fixture(parts: tuple[FixturePart, ...], deb_dir: Path) -> np.ndarray:
    """The audio of one fixture (float32 mono 16 kHz) from the unpacked packages."""
    gap = np.zeros(int(FIXTURE_GAP_S * SR), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, p in enumerate(parts):
        root = deb_dir / "x" / p.package / _ROOTS[p.package]
        if i:
            pieces.append(gap)
        pieces.append(load_16k(root / p.rel, p.start_s, p.dur_s))
    return np.concatenate(pieces)


def write_fixtures(out_dir: Path, deb_dir: Path = DEFAULT_DEB_DIR) -> list[Path]:
    """Write every fixture of :data:`FIXTURES` as ``out_dir/<name>.ogg`` (Ogg Vorbis, quality
    0.5, 16 kHz mono). Returns the paths."""
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, parts in FIXTURES.items():
        x = build_fixture(parts, deb_dir)
        x *= np.float32(min(1.0, FIXTURE_PEAK / max(float(np.abs(x).max()), 1e-9)))
        path = out_dir / f"{name}.ogg"
        sf.write(str(path), x, SR, format="OGG", subtype="VORBIS", compression_level=0.5)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.vad_sounds", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("fetch", "list", "fixtures"))
    ap.add_argument("--debs", type=Path, default=DEFAULT_DEB_DIR, help="folder of the .deb files (default %(default)s)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nonspeech")
    a = ap.parse_args(argv)
    fetch_debs(a.debs)
    if a.command == "list":
        for f in catalogue(a.debs):
            print(f"{f.cls}\t{f.part}\t{f.package}\t{f.rel}")
    elif a.command == "fixtures":
        for p in write_fixtures(a.out, a.debs):
            print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
