"""Timeline plots (``stream-ser plot``, ``stream_ser.plot``) from real timelines."""

from __future__ import annotations

import dataclasses
import math
import re
import sys

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

import stream_ser
from stream_ser.cli import main
from stream_ser.display import EMOTION_COLOURS, emotion_colours
from stream_ser.plot import (
    NO_SPEECH_COLOR,
    MissingDependencyError,
    Timeline,
    TimelineError,
    plot_timelines,
    read_timeline_csv,
    timelines_from_predictions,
)

matplotlib = pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def timeline_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "t.csv"
    assert main(["analyse", str(ANGRY_CLIP), str(TESS_CLIP), "--csv", str(path), "-q"]) == 0
    return path


def test_read_timeline_csv(timeline_csv, shipped_model) -> None:
    tls = read_timeline_csv(timeline_csv)
    assert [t.source for t in tls] == [str(ANGRY_CLIP), str(TESS_CLIP)]
    k = len(shipped_model.labels)
    for t in tls:
        n = t.end_s.shape[0]
        assert t.labels == shipped_model.labels and t.channel == 0 and t.run == 1
        assert t.start_s.dtype == t.end_s.dtype == np.float64 and t.speech.dtype == bool
        assert t.probabilities.shape == (n, k) and t.start_s.shape == t.speech.shape == (n,)
        assert np.all(np.diff(t.end_s) > 0)
        assert np.all(np.isnan(t.probabilities[~t.speech]))
        assert np.allclose(t.probabilities[t.speech].sum(axis=1), 1, atol=2e-3)
        assert t.top_labels == [t.labels[int(np.argmax(r))] if s else None for r, s in zip(t.probabilities, t.speech)]
    assert not tls[0].speech.all() and tls[0].speech.any()  # the RAVDESS clip opens with silence


def test_predictions_and_csv_give_the_same_timeline(timeline_csv) -> None:
    from_csv = read_timeline_csv(timeline_csv)[0]
    from_api = timelines_from_predictions(stream_ser.analyse(ANGRY_CLIP).timeline)[0]
    assert np.array_equal(from_csv.end_s, np.round(from_api.end_s, 3))
    assert np.array_equal(from_csv.speech, from_api.speech)
    assert np.allclose(from_csv.probabilities, from_api.probabilities, atol=5e-5, equal_nan=True)


def test_appended_sessions_become_runs(tmp_path) -> None:
    out = tmp_path / "s.csv"
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out), "-q"]) == 0
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out), "--append", "-q"]) == 0
    tls = read_timeline_csv(out)
    assert [t.run for t in tls] == [1, 2] and tls[1].title.endswith("run 2")


@pytest.mark.parametrize(
    "content,match",
    [
        ("a,b,c\n1,2,3\n", "not a stream-ser timeline"),
        ("source,channel,start_s,end_s,speech,label,confidence\n", "not a stream-ser timeline"),
        ("source,channel,start_s,end_s,speech,label,confidence,p_a,p_b\n", "no rows"),
        ("source,channel,start_s,end_s,speech,label,confidence,p_a,p_b\nx,0,0,0.5,1,a,0.6,0.6\n", "line 2: 8 fields"),
        ("source,channel,start_s,end_s,speech,label,confidence,p_a,p_b\nx,0,zero,0.5,0,,,,\n", "line 2"),
        ("source,channel,start_s,end_s,speech,label,confidence,p_a,p_b\nx,0,0,0.5,yes,,,,\n", "speech must be 0 or 1"),
    ],
)
def test_bad_timelines_are_clear_errors(tmp_path, content, match) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TimelineError, match=match):
        read_timeline_csv(path)
    with pytest.raises(TimelineError, match="cannot read"):
        read_timeline_csv(tmp_path / "missing.csv")


def test_plot_draws_strip_areas_and_gaps(timeline_csv, tmp_path) -> None:
    tls = read_timeline_csv(timeline_csv)
    out = tmp_path / "t.png"
    fig = plot_timelines(tls, out, title="two clips")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and 5_000 < len(data) < 300_000
    assert len(fig.axes) == 2 * len(tls)  # a label strip and a probability panel per timeline
    ax = fig.axes[1]
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlim()[1] == pytest.approx(tls[0].end_s[-1])
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "0:01" in ticks and "0:02" in ticks  # m:ss
    # rendered pixels: the no-speech colour and the colour of the most frequent top label appear
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].reshape(-1, 3).astype(int)

    def present(hex_color: str) -> bool:
        target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
        return bool(np.any(np.all(np.abs(rgb - target) <= 2, axis=1)))

    assert present(NO_SPEECH_COLOR)
    top = [lab for lab in tls[0].top_labels if lab]
    commonest = max(set(top), key=top.count)
    assert present(emotion_colours(tls[0].labels)[commonest])


def test_plot_from_api_predictions(tmp_path) -> None:
    result = stream_ser.analyse(HAPPY_CLIP)
    fig = plot_timelines(result.timeline, tmp_path / "h.svg")
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="no predictions"):
        plot_timelines([])


def test_labels_have_the_terminal_uis_colours(tmp_path) -> None:
    """Known and unknown labels are drawn in the colours the terminal UI gives them, all distinct."""
    from stream_ser.tui.palette import EmotionPalette

    labels = ("alpha", "beta", "angry")
    t = Timeline("s", 0, labels, np.array([0.0, 0.0]), np.array([0.5, 1.0]), np.array([True, False]),
                 np.array([[0.2, 0.3, 0.5], [math.nan] * 3]))
    fig = plot_timelines([t], tmp_path / "x.png")
    legend = fig.legends[0]
    colours = [matplotlib.colors.to_hex(h.get_facecolor()) for h in legend.legend_handles]
    assert len(set(colours)) == len(colours) == 4 and colours[2] == EMOTION_COLOURS["angry"]
    assert colours[:3] == [EmotionPalette(labels).colours[label] for label in labels]


def test_cli_plot(timeline_csv, tmp_path, capsys) -> None:
    out = tmp_path / "p.png"
    assert main(["plot", str(timeline_csv), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and "wrote" in capsys.readouterr().err
    assert main(["plot", str(timeline_csv), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["plot", str(timeline_csv), "-o", str(out), "--force", "--source", "YAF", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["plot", str(timeline_csv), "-o", str(tmp_path / "n.png"), "--source", "nothing"]) == 1
    assert "no source matches" in capsys.readouterr().err
    # default output: next to the CSV, same stem
    csv_copy = tmp_path / "copy.csv"
    csv_copy.write_bytes(timeline_csv.read_bytes())
    assert main(["plot", str(csv_copy), "-q"]) == 0 and (tmp_path / "copy.png").is_file()
    # unsupported format and unreadable input
    assert main(["plot", str(timeline_csv), "-o", str(tmp_path / "p.xyz")]) == 2
    assert "cannot write the image" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.csv")]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err


def test_cli_plot_max_panels(tmp_path, capsys) -> None:
    out = tmp_path / "m.csv"
    assert main(["analyse", str(TESS_CLIP), str(HAPPY_CLIP), str(ANGRY_CLIP), "--csv", str(out), "-q"]) == 0
    assert main(["plot", str(out), "-o", str(tmp_path / "m.png"), "--max-panels", "2"]) == 0
    assert "drawing the first 2" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(timeline_csv, tmp_path, monkeypatch, capsys) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependencyError, match=r"stream-ser\[plot\]"):
        plot_timelines(read_timeline_csv(timeline_csv))
    assert main(["plot", str(timeline_csv), "-o", str(tmp_path / "z.png")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "stream-ser[plot]"' in err and "Traceback" not in err
    assert not (tmp_path / "z.png").exists()


def test_panel_titles_name_the_file_not_its_folders(timeline_csv, tmp_path) -> None:
    """A panel is titled with the file's name (the CSV holds the whole path), unless two panels'
    files share a name, which then keep their paths to tell them apart."""
    tls = read_timeline_csv(timeline_csv)
    assert tls[0].source == str(ANGRY_CLIP)  # the CSV keeps the path as given
    fig = plot_timelines(tls, tmp_path / "t.png")
    titles = [ax.get_title(loc="left") for ax in fig.axes[0::2]]
    assert titles == [f"{ANGRY_CLIP.name}  (channel 0)", f"{TESS_CLIP.name}  (channel 0)"]
    same = [Timeline(f"{folder}/clip.flac", 0, ("a", "b"), np.array([0.0]), np.array([0.5]), np.array([True]),
                     np.array([[0.4, 0.6]])) for folder in ("calls/monday", "calls/tuesday")]
    fig = plot_timelines([*same, Timeline("mic:USB Audio", 1, ("a", "b"), np.array([0.0]), np.array([0.5]),
                                          np.array([True]), np.array([[0.4, 0.6]]))], tmp_path / "s.png")
    assert [ax.get_title(loc="left") for ax in fig.axes[0::2]] == [
        "calls/monday/clip.flac  (channel 0)", "calls/tuesday/clip.flac  (channel 0)", "mic:USB Audio  (channel 1)"]


@pytest.mark.parametrize("clips", [(TESS_CLIP,), (ANGRY_CLIP,), (ANGRY_CLIP, HAPPY_CLIP, ANGRY_CLIP, HAPPY_CLIP)])
def test_time_ticks_are_round_seconds(tmp_path, clips) -> None:
    """Ticks sit on whole seconds (a round step for longer timelines) and read m:ss, never
    tenths like 0:00.5, for a 1.9 s, a 4.4 s and a 16 s timeline."""
    predictions = []
    offset = 0.0
    for clip in clips:  # one stream of several clips: end_s continues across them
        timeline = stream_ser.analyse(clip).timeline
        predictions += [dataclasses.replace(p, source="s", start_s=p.start_s + offset, end_s=p.end_s + offset)
                        for p in timeline]
        offset = predictions[-1].end_s
    fig = plot_timelines(predictions, tmp_path / "r.png")
    ax = fig.axes[1]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    assert labels and all(re.fullmatch(r"\d+:\d\d", text) for text in labels), labels
    step = ticks[1] - ticks[0]
    assert step in (1, 2, 5) and high / step <= 10
