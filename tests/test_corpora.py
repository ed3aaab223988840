"""Tests for the corpus readers (training.corpora) and the speaker split (training.split).

Synthetic tests build empty files named like each corpus in ``tmp_path`` (only
names are parsed). Real-data tests use the ``data_dir`` fixture (conftest.py)
and check the counts documented in ``shared/data/README.md``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.corpora import READERS, Utterance, crema_d, discover, emodb, nemo, ravdess, savee, tess
from training.labels import EMOTIONS
from training.split import DEFAULT_SPLIT_PATH, PARTITIONS, Split, load_split


def touch(root: Path, *relative: str) -> list[Path]:
    """Creates empty files (and their folders) under ``root``; returns their paths."""
    paths = []
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        paths.append(path)
    return paths


def parsed(module, rel: str, tmp_path: Path) -> Utterance | None:
    (path,) = touch(tmp_path, rel)
    return module.parse_name(path)


# --- schema and registry ---------------------------------------------------------------------


def test_emotions_schema():
    assert EMOTIONS == ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")


@pytest.mark.parametrize("name", list(READERS))
def test_reader_registry_and_mappings(name):
    module = READERS[name]
    assert module.CORPUS == name
    assert set(module.TO_SCHEMA.values()) <= set(EMOTIONS) | {None}


def test_ravdess_and_tess_cover_every_class():
    assert set(ravdess.TO_SCHEMA.values()) == set(EMOTIONS)
    assert set(tess.TO_SCHEMA.values()) == set(EMOTIONS)


def test_utterance_rejects_label_outside_schema():
    with pytest.raises(ValueError, match="bored"):
        Utterance(Path("x.wav"), "emodb", "emodb:03", "bored", "boredom")


# --- RAVDESS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "source", "label"),
    [
        ("01", "neutral", "neutral"),
        ("02", "calm", "neutral"),
        ("03", "happy", "happy"),
        ("04", "sad", "sad"),
        ("05", "angry", "angry"),
        ("06", "fearful", "fear"),
        ("07", "disgust", "disgust"),
        ("08", "surprised", "surprise"),
    ],
)
def test_ravdess_emotions(tmp_path, code, source, label):
    rel = f"Actor_12/03-01-{code}-01-02-01-12.flac"
    utt = parsed(ravdess, rel, tmp_path)
    assert utt == Utterance(tmp_path / rel, "ravdess", "ravdess:12", label, source)
    assert ravdess.actor_id(utt) == 12


@pytest.mark.parametrize("ext", [".wav", ".WAV", ".flac", ".Flac", ".ogg", ".opus", ".mp3"])
def test_ravdess_any_audio_extension(tmp_path, ext):
    utt = parsed(ravdess, f"03-01-05-02-01-02-01{ext}", tmp_path)
    assert utt is not None and utt.speaker == "ravdess:01" and utt.label == "angry"


@pytest.mark.parametrize(
    "name",
    [
        "01-01-05-01-02-01-12.wav",  # full audio-video
        "02-01-05-01-02-01-12.wav",  # video only
        "03-02-05-01-02-01-12.wav",  # song
        "03-01-09-01-02-01-12.wav",  # no emotion 09
        "03-01-05-03-02-01-12.wav",  # no intensity 03
        "03-01-05-01-02-01-25.wav",  # no actor 25
        "03-01-05-01-02-01-00.wav",  # no actor 00
        "03-01-05-01-02-12.wav",  # six fields
        "03-01-05-01-02-01-12-1.wav",
        "3-1-5-1-2-1-12.wav",
        "03-01-05-01-02-01-12.txt",  # not audio
        "03-01-05-01-02-01-12.wav.bak",
        "._03-01-05-01-02-01-12.wav",  # macOS resource fork
    ],
)
def test_ravdess_rejects(tmp_path, name):
    assert parsed(ravdess, name, tmp_path) is None


@given(
    emotion=st.integers(1, 8),
    intensity=st.integers(1, 2),
    statement=st.integers(1, 2),
    repetition=st.integers(1, 2),
    actor=st.integers(1, 24),
)
def test_ravdess_every_valid_code_parses(emotion, intensity, statement, repetition, actor):
    name = f"03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
    utt = ravdess.parse_name(Path("Actor") / name)  # parse_name never touches the disk
    assert utt is not None
    assert utt.source_label == ravdess.SOURCE_LABELS[f"{emotion:02d}"]
    assert ravdess.actor_id(utt) == actor


def test_actor_id_rejects_other_corpora():
    utt = tess.parse_name(Path("OAF_back_angry.wav"))
    with pytest.raises(ValueError, match="not a RAVDESS"):
        ravdess.actor_id(utt)


def test_ravdess_scan_sorted_and_filtered(tmp_path):
    touch(
        tmp_path,
        "Actor_02/03-01-08-02-02-02-02.wav",
        "Actor_01/03-01-01-01-01-01-01.flac",
        "Actor_01/03-01-02-02-01-01-01.FLAC",
        "Actor_01/01-01-02-02-01-01-01.mp4",  # video
        "Actor_01/03-02-02-02-01-01-01.wav",  # song
        "Actor_01/notes.txt",
        "README.md",
    )
    (tmp_path / "Actor_03.wav").mkdir()  # a folder with an audio-like name is not a file
    utts = ravdess.scan(tmp_path)
    assert [u.path.relative_to(tmp_path).as_posix() for u in utts] == [
        "Actor_01/03-01-01-01-01-01-01.flac",
        "Actor_01/03-01-02-02-01-01-01.FLAC",
        "Actor_02/03-01-08-02-02-02-02.wav",
    ]
    assert [u.label for u in utts] == ["neutral", "neutral", "surprise"]


@pytest.mark.parametrize("module", list(READERS.values()), ids=list(READERS))
def test_scan_missing_root(tmp_path, module):
    with pytest.raises(FileNotFoundError, match="not found"):
        module.scan(tmp_path / "absent")


# --- TESS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "speaker", "source", "label"),
    [
        ("OAF_angry/OAF_back_angry.flac", "tess:OAF", "angry", "angry"),
        ("OAF_disgust/OAF_back_disgust.wav", "tess:OAF", "disgust", "disgust"),
        ("OAF_Fear/OAF_back_fear.ogg", "tess:OAF", "fear", "fear"),
        ("YAF_happy/YAF_dog_happy.wav", "tess:YAF", "happy", "happy"),
        ("YAF_neutral/YAF_dog_neutral.WAV", "tess:YAF", "neutral", "neutral"),
        ("OAF_Sad/OAF_dog_sad.flac", "tess:OAF", "sad", "sad"),
        ("OAF_Pleasant_surprise/OAF_back_ps.flac", "tess:OAF", "ps", "surprise"),
        ("YAF_pleasant_surprised/YAF_back_PS.wav", "tess:YAF", "ps", "surprise"),
        ("YAF_fear/YAF_back_Fear.wav", "tess:YAF", "fear", "fear"),
        ("YAF_sad/YAF_dog_happy.wav", "tess:YAF", "happy", "happy"),  # label from the name, not the folder
        ("OA_bite_neutral.wav", "tess:OAF", "neutral", "neutral"),  # misnamed file of the original release
    ],
)
def test_tess_parses(tmp_path, rel, speaker, source, label):
    utt = parsed(tess, rel, tmp_path)
    assert utt == Utterance(tmp_path / rel, "tess", speaker, label, source)


@pytest.mark.parametrize(
    "name",
    [
        "XAF_back_angry.wav",  # unknown speaker
        "OAF_back_bored.wav",  # unknown emotion
        "OAF_back.wav",
        "OAF_back_angry_2.wav",
        "OAF_back_angry.txt",
        "OAF__angry.wav",
    ],
)
def test_tess_rejects(tmp_path, name):
    assert parsed(tess, name, tmp_path) is None


# --- CREMA-D ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "source", "label"),
    [
        ("ANG", "anger", "angry"),
        ("DIS", "disgust", "disgust"),
        ("FEA", "fear", "fear"),
        ("HAP", "happy", "happy"),
        ("NEU", "neutral", "neutral"),
        ("SAD", "sad", "sad"),
    ],
)
@pytest.mark.parametrize("ext", [".wav", ".ogg", ".OGG", ".opus"])
def test_crema_d_parses(tmp_path, code, source, label, ext):
    rel = f"AudioWAV/1001_DFA_{code}_XX{ext}"
    assert parsed(crema_d, rel, tmp_path) == Utterance(tmp_path / rel, "crema-d", "crema-d:1001", label, source)


@pytest.mark.parametrize(
    "name",
    [
        "1000_DFA_ANG_XX.wav",  # actors are 1001-1091
        "1092_DFA_ANG_XX.wav",
        "1001_XYZ_ANG_XX.wav",  # unknown sentence
        "1001_DFA_SUR_XX.wav",  # no surprise in CREMA-D
        "1001_DFA_ANG_ZZ.wav",  # unknown level
        "1001_dfa_ang_xx.wav",
        "1001_DFA_ANG.wav",
        "1001_DFA_ANG_XX.csv",
    ],
)
def test_crema_d_rejects(tmp_path, name):
    assert parsed(crema_d, name, tmp_path) is None


def test_crema_d_metadata_only_folder_is_empty(tmp_path):
    touch(tmp_path, "SentenceFilenames.csv", "processedResults/summaryTable.csv", "LICENSE.txt")
    assert crema_d.scan(tmp_path) == []


# --- SAVEE -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "speaker", "source", "label"),
    [
        ("DC_a01.wav", "savee:DC", "anger", "angry"),
        ("JE_d02.wav", "savee:JE", "disgust", "disgust"),
        ("JK_f03.flac", "savee:JK", "fear", "fear"),
        ("KL_h15.wav", "savee:KL", "happiness", "happy"),
        ("DC_n30.WAV", "savee:DC", "neutral", "neutral"),
        ("JK_sa03.wav", "savee:JK", "sadness", "sad"),
        ("KL_su15.ogg", "savee:KL", "surprise", "surprise"),
        ("ALL/JE_sa01.wav", "savee:JE", "sadness", "sad"),
        ("AudioData/DC/a01.wav", "savee:DC", "anger", "angry"),
        ("AudioData/JE/sa01.wav", "savee:JE", "sadness", "sad"),
        ("AudioData/JE/su01.wav", "savee:JE", "surprise", "surprise"),
        ("AudioData/KL/n30.flac", "savee:KL", "neutral", "neutral"),
    ],
)
def test_savee_parses_both_layouts(tmp_path, rel, speaker, source, label):
    assert parsed(savee, rel, tmp_path) == Utterance(tmp_path / rel, "savee", speaker, label, source)


@pytest.mark.parametrize(
    "rel",
    [
        "XX_a01.wav",  # unknown speaker
        "DC_x01.wav",  # unknown emotion code
        "DC_s01.wav",  # 's' alone is not a code
        "DC_a1.wav",
        "DC_a01.txt",
        "AudioData/other/a01.wav",  # nested layout needs a speaker folder
        "a01.wav",
        "AudioData/DC/DC_a01_extra.wav",
    ],
)
def test_savee_rejects(tmp_path, rel):
    assert parsed(savee, rel, tmp_path) is None


# --- EmoDB -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("letter", "source", "label"),
    [
        ("W", "anger", "angry"),
        ("L", "boredom", None),
        ("E", "disgust", "disgust"),
        ("A", "fear", "fear"),
        ("F", "happiness", "happy"),
        ("T", "sadness", "sad"),
        ("N", "neutral", "neutral"),
    ],
)
def test_emodb_parses(tmp_path, letter, source, label):
    rel = f"wav/03a01{letter}a.wav"
    assert parsed(emodb, rel, tmp_path) == Utterance(tmp_path / rel, "emodb", "emodb:03", label, source)


@pytest.mark.parametrize("name", ["16b10Tc.flac", "08a02Nb.WAV", "11b09Eb.ogg"])
def test_emodb_other_codes_and_extensions(tmp_path, name):
    utt = parsed(emodb, name, tmp_path)
    assert utt is not None and utt.speaker == f"emodb:{name[:2]}"


@pytest.mark.parametrize(
    "name",
    [
        "02a01Fa.wav",  # no speaker 02
        "03c01Fa.wav",  # no text c01
        "03a03Fa.wav",  # no text a03
        "03a01Xa.wav",  # unknown emotion letter
        "03a01fa.wav",  # emotion letters are upper case
        "03a01Fab.wav",
        "03a01F.wav",
        "03a01Fa.txt",
    ],
)
def test_emodb_rejects(tmp_path, name):
    assert parsed(emodb, name, tmp_path) is None


@pytest.mark.parametrize(
    ("rel", "speaker", "source", "label"),
    [
        ("samples/EB0_anger_1.ogg", "nemo:EB0", "anger", "angry"),
        ("samples/WR0_surprised_64.wav", "nemo:WR0", "surprised", "surprise"),
        ("MP0_happiness_250.flac", "nemo:MP0", "happiness", "happy"),
        ("samples/KD0_sadness_7.OGG", "nemo:KD0", "sadness", "sad"),
        ("samples/ic0_Fear_3.ogg", "nemo:IC0", "fear", "fear"),
        ("samples/TP0_neutral_13.ogg", "nemo:TP0", "neutral", "neutral"),
    ],
)
def test_nemo_parses(tmp_path, rel, speaker, source, label):
    assert parsed(nemo, rel, tmp_path) == Utterance(tmp_path / rel, "nemo", speaker, label, source)


@pytest.mark.parametrize(
    "name",
    [
        "XX0_anger_1.ogg",  # no such actor
        "EB0_disgust_1.ogg",  # nEMO has no disgust
        "EB0_anger.ogg",  # no number
        "EB0_anger_1b.ogg",
        "EB0_anger_1.txt",
        "data.tsv",
    ],
)
def test_nemo_rejects(tmp_path, name):
    assert parsed(nemo, name, tmp_path) is None


def test_nemo_has_no_disgust():
    assert set(nemo.TO_SCHEMA.values()) == set(EMOTIONS) - {"disgust"}


# --- discover --------------------------------------------------------------------------------


def test_discover_all_corpora(tmp_path):
    touch(
        tmp_path,
        "ravdess/Actor_01/03-01-03-01-01-01-01.flac",
        "tess/OAF_angry/OAF_back_angry.flac",
        "crema-d/AudioWAV/1001_DFA_ANG_XX.ogg",
        "savee/AudioData/DC/a01.wav",
        "emodb/wav/03a01La.wav",
        "nemo/samples/EB0_anger_1.ogg",
        "nemo/data.tsv",
        "README.md",
    )
    utts = discover(tmp_path)
    assert [u.corpus for u in utts] == ["ravdess", "tess", "crema-d", "savee", "emodb", "nemo"]
    assert [u.speaker for u in utts] == ["ravdess:01", "tess:OAF", "crema-d:1001", "savee:DC", "emodb:03", "nemo:EB0"]
    assert utts[-2].label is None


def test_discover_skips_absent_and_empty_corpora(tmp_path, caplog):
    touch(tmp_path, "tess/YAF_sad/YAF_dog_sad.wav", "crema-d/SentenceFilenames.csv")
    with caplog.at_level(logging.INFO, logger="training.corpora"):
        utts = discover(tmp_path)
    assert [u.corpus for u in utts] == ["tess"]
    assert "crema-d: no parseable audio" in caplog.text
    assert "ravdess: no folder" in caplog.text


def test_discover_selected_corpora(tmp_path):
    touch(tmp_path, "ravdess/03-01-03-01-01-01-01.wav", "tess/OAF_back_angry.wav")
    assert [u.corpus for u in discover(tmp_path, corpora=["tess"])] == ["tess"]
    with pytest.raises(KeyError, match="iemocap"):
        discover(tmp_path, corpora=["iemocap"])


def test_discover_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        discover(tmp_path / "absent")
    touch(tmp_path, "ravdess/readme.txt", "crema-d/SentenceFilenames.csv")
    with pytest.raises(FileNotFoundError, match="no corpus audio found"):
        discover(tmp_path)


# --- split -----------------------------------------------------------------------------------


def test_default_split():
    split = load_split()
    assert split == load_split(DEFAULT_SPLIT_PATH)
    assert split.name == "si_v1"
    assert split.train == {f"ravdess:{i:02d}" for i in range(1, 17)} | {"tess:OAF"}
    assert split.validation == {f"ravdess:{i:02d}" for i in range(17, 21)}
    assert split.test == {f"ravdess:{i:02d}" for i in range(21, 25)} | {"tess:YAF"}
    assert any("no validation speaker" in note for note in split.notes)


def test_split_rejects_overlap():
    with pytest.raises(ValueError, match=r"\['a:1'\] are in both train and test"):
        Split("bad", frozenset({"a:1", "a:2"}), frozenset({"a:3"}), frozenset({"a:1"}))


def write_split(tmp_path: Path, **fields) -> Path:
    data = {"name": "t", "train": ["a:1"], "validation": ["a:2"], "test": ["a:3"]} | fields
    path = tmp_path / "split.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"validation": ["a:1"]}, "both train and validation"),
        ({"test": ["a:3", "a:3"]}, "more than once"),
        ({"test": "a:3"}, "must be a list"),
        ({"name": ""}, "'name'"),
        ({"notes": 3}, "'notes'"),
    ],
)
def test_load_split_rejects_bad_files(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        load_split(write_split(tmp_path, **fields))


def test_load_split_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_split(bad)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"name": "t", "train": [], "test": []}))
    with pytest.raises(ValueError, match="'validation'"):
        load_split(missing)


def test_partition_by_speaker(caplog):
    split = Split("t", frozenset({"x:1"}), frozenset({"x:2"}), frozenset({"x:3"}))
    utts = [Utterance(Path(f"{i}.wav"), "x", f"x:{i % 5}", "sad", "sad") for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="training.split"):
        parts = split.partition(utts)
    assert list(parts) == list(PARTITIONS)
    assert [u.path.name for u in parts["train"]] == ["1.wav", "6.wav"]
    assert [u.path.name for u in parts["validation"]] == ["2.wav", "7.wav"]
    assert [u.path.name for u in parts["test"]] == ["3.wav", "8.wav"]
    assert "4 utterances of 2 speakers" in caplog.text
    assert [u.path.name for u in split.unassigned(utts)] == ["0.wav", "4.wav", "5.wav", "9.wav"]
    assert split.partition_of("x:3") == "test" and split.partition_of("x:0") is None
    with pytest.raises(ValueError, match="4 utterances of 2 speakers"):
        split.partition(utts, strict=True)


def test_partition_without_unassigned_is_silent(caplog):
    split = Split("t", frozenset({"x:1"}), frozenset(), frozenset())
    utts = [Utterance(Path("a.wav"), "x", "x:1", "sad", "sad")]
    with caplog.at_level(logging.WARNING, logger="training.split"):
        assert split.partition(utts, strict=True) == {"train": utts, "validation": [], "test": []}
    assert caplog.text == ""


# --- real data (shared/data) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_ravdess(data_dir) -> list[Utterance]:
    return ravdess.scan(data_dir / "ravdess")


@pytest.fixture(scope="module")
def real_tess(data_dir) -> list[Utterance]:
    return tess.scan(data_dir / "tess")


def test_real_ravdess(real_ravdess):
    assert len(real_ravdess) == 1440
    assert len({u.speaker for u in real_ravdess}) == 24
    counts = Counter(u.source_label for u in real_ravdess)
    assert counts == {"neutral": 96} | {
        name: 192 for name in ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    }
    assert Counter(u.label for u in real_ravdess)["neutral"] == 96 + 192
    for utt in real_ravdess:  # folder Actor_NN agrees with the actor code in the name
        assert utt.path.parent.name == f"Actor_{ravdess.actor_id(utt):02d}"


def test_real_tess(real_tess):
    assert len(real_tess) == 2799
    assert {u.speaker for u in real_tess} == {"tess:OAF", "tess:YAF"}
    labels = Counter(u.label for u in real_tess)
    assert labels["surprise"] == 400
    assert labels == {name: 400 for name in EMOTIONS} | {"neutral": 399}


def test_real_nemo_agrees_with_its_table(data_dir):
    """Every file of nEMO parses, and speaker and emotion agree with the corpus's data.tsv."""
    utts = nemo.scan(data_dir / "nemo")
    assert len(utts) == 4481
    rows = [line.split("\t") for line in (data_dir / "nemo" / "data.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    table = {Path(row[0]).stem: (row[4].strip(), row[1]) for row in rows}
    assert {u.path.stem: (u.speaker.split(":")[1], u.source_label) for u in utts} == table
    assert Counter(u.speaker for u in utts) == {f"nemo:{s}": n for s, n in Counter(s for s, _ in table.values()).items()}
    assert Counter(u.label for u in utts) == {
        "neutral": 809, "sad": 769, "angry": 749, "happy": 749, "fear": 736, "surprise": 669}


def test_real_discover(data_dir):
    utts = discover(data_dir)
    corpora = Counter(u.corpus for u in utts)
    assert corpora["ravdess"] == 1440 and corpora["tess"] == 2799 and corpora["nemo"] == 4481


def test_real_split_is_speaker_independent(real_ravdess, real_tess):
    parts = load_split().partition(real_ravdess + real_tess, strict=True)
    speakers = {name: {u.speaker for u in utts} for name, utts in parts.items()}
    for i, first in enumerate(PARTITIONS):
        assert speakers[first], f"{first} is empty"
        for second in PARTITIONS[i + 1 :]:
            assert not speakers[first] & speakers[second], (first, second)
    held_out = {f"ravdess:{i}" for i in range(21, 25)}
    assert {s for s in speakers["test"] if s.startswith("ravdess:")} == held_out
    assert not held_out & (speakers["train"] | speakers["validation"])
    actors = {name: {ravdess.actor_id(u) for u in utts if u.corpus == "ravdess"} for name, utts in parts.items()}
    assert actors == {"train": set(range(1, 17)), "validation": set(range(17, 21)), "test": set(range(21, 25))}
    assert sum(map(len, parts.values())) == 1440 + 2799
