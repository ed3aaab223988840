"""Any native format, resampled in a stream exactly as the whole signal: the file reader's
streaming soxr resampler, 1-8 channels, 16/24-bit and float files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP

from stream_ser.sources import RESAMPLER_QUALITY, iter_file_frames, load_audio


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_chunked_resampling_matches_whole_signal(tmp_path, rate, subtype) -> None:
    """Streaming soxr in blocks of any size gives the whole-signal result (tone and speech, 1-8
    channels, 16/24-bit and float files), and the tone comes out at 16 kHz as it should."""
    speech = soxr.resample(load_audio(ANGRY_CLIP), 16000, rate).astype(np.float32)
    t = np.arange(speech.size) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    columns = [speech, tone, -0.5 * speech, 0.25 * tone, speech[::-1].copy(), tone, speech, 0.1 * tone]
    path = tmp_path / "x.wav"
    sf.write(path, np.stack(columns, axis=1), rate, subtype=subtype)
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    whole = soxr.resample(decoded, rate, 16000, quality=RESAMPLER_QUALITY)
    for block in (160, 1024, 4801):
        got = np.concatenate(list(iter_file_frames(path, 16000, block, "all")))
        assert got.shape == whole.shape == (round(speech.size * 16000 / rate), 8)
        assert np.max(np.abs(got - whole)) < 1e-6, block
    # each channel alone, in a stream, equals its column of the multi-channel stream
    alone = np.concatenate(list(iter_file_frames(path, 16000, 1024, (2,))))
    np.testing.assert_array_equal(alone[:, 0], got[:, 1])
    # the tone is a 440 Hz tone at 16 kHz (away from the edges; quantisation limits PCM_16)
    n = alone.shape[0]
    ideal = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / 16000)
    tol = 2e-3 if subtype == "PCM_16" else 1e-3
    assert np.max(np.abs(alone[1000:-1000, 0] - ideal[1000:-1000])) < tol
