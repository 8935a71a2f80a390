"""Fluent digit strings: libespeak-ng speaks a whole string; its word events give each digit's boundaries."""

import json

import numpy as np
import pytest

from explorer.cli import main
from explorer.papers.transducer import augment as G
from explorer.papers.transducer import data as D
from explorer.papers.transducer import voices as V

from .helpers import tone_clips

needs_espeak = pytest.mark.skipif(
    not V.fluent_available(), reason="libespeak-ng is not installed (apt-get install espeak-ng)"
)


@needs_espeak
@pytest.mark.parametrize("voice", ["en-us+m3", "en-gb+f2", "en-gb-scotland+m1"])
def test_fluent_string_has_ordered_digit_bounds_inside_the_audio(voice):
    u = V.espeak_fluent([2, 9, 3, 4, 0], voice, rate=220, pitch=50)
    assert u is not None and u.digits == [2, 9, 3, 4, 0]
    assert len(u.bounds) == 5 and 0 <= u.bounds[0][0]
    for (a, b), (c, _) in zip(u.bounds, u.bounds[1:]):
        assert a < b <= c  # a word ends before (or where) the next one starts
    assert u.bounds[-1][1] <= len(u.audio)
    # every word holds sound: its RMS is far above that of digital silence
    for a, b in u.bounds:
        assert np.sqrt((u.audio[a:b] ** 2).mean()) > 1e-3


@needs_espeak
def test_a_comma_pause_is_left_out_of_the_word_before_it():
    plain = V.espeak_fluent([1, 2, 3], "en-us+m3", rate=180)
    paused = V.espeak_fluent([1, 2, 3], "en-us+m3", rate=180, pauses=[0])
    gap = lambda u: u.bounds[1][0] - u.bounds[0][1]  # noqa: E731
    assert gap(paused) > gap(plain) + 0.05 * D.SAMPLE_RATE


@needs_espeak
def test_fluent_phrases_are_cached_and_read_back_identically(tmp_path):
    a = V.fluent_phrases(cache=tmp_path, n=6, seed=3)
    assert len(a) == 6 and len(list(tmp_path.glob("transducer_fluent_*.npz"))) == 1
    b = V.fluent_phrases(cache=tmp_path, n=6, seed=3)
    for x, y in zip(a, b):
        assert x.digits == y.digits and x.bounds == y.bounds
        assert np.abs(x.audio - y.audio).max() < 1e-4  # int16 storage
        assert 2 <= len(x.digits) <= 7


def test_the_fluent_share_of_a_source_and_its_augmentation():
    audio = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    phrase = D.Utterance(audio, [4, 2], [(0, 2000), (2100, 3900)], "espeak-fluent")
    src = G.UtteranceSource(tone_clips(speaker="george"), fluent=[phrase], fluent_weight=0.5)
    rng = np.random.default_rng(1)
    utts = src.batch(rng, 200)
    fl = [u for u in utts if u.speaker == "espeak-fluent"]
    assert 60 < len(fl) < 140
    for u in fl:
        assert u.digits == [4, 2] and u.bounds[0][0] > 0 and u.bounds[-1][1] <= len(u.audio)
        assert u.bounds[0][1] < u.bounds[1][0]
    # no fluent phrases: the weight is ignored
    assert G.UtteranceSource(tone_clips(speaker="george"), fluent_weight=0.5).fluent_weight == 0.0


@needs_espeak
def test_fluent_test_files_name_their_digits(tmp_path, capsys):
    out = tmp_path / "fl"
    assert main(["transducer-utterances", "--fluent", "-n", "2", "--out", str(out)]) == 0
    files = sorted(out.glob("*.wav"))
    assert len(files) == 6 and all("-fluent_" in f.name for f in files)
    from explorer.papers.transducer.evaluate import reference_from_name

    assert all(reference_from_name(f) for f in files)
    capsys.readouterr()
    assert main(["eval", "transducer", "--audio-dir", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["files"] == 6 and not res["errors"]


def test_demo_labels_name_the_voice_and_say_which_are_fluent():
    from pathlib import Path

    from explorer.papers.transducer.panel import demo_label

    assert demo_label(Path("7812121_en-gb-f5-fluent_0001.wav")) == "7812121  (en-gb-f5, fluent)"
    assert demo_label(Path("5288_en-us-m8_0005.wav")) == "5288  (en-us-m8)"
    assert demo_label(Path("42.wav")) == "42"


@needs_espeak
def test_the_fluent_test_set_is_the_same_strings_at_every_call():
    from explorer.papers.transducer.testsets import fluent_test_phrases

    a, b = fluent_test_phrases(3), fluent_test_phrases(3)
    assert [u.text for u in a] == [u.text for u in b] and len(a) == 9
    assert all(x.audio is y.audio for x, y in zip(a, b))
