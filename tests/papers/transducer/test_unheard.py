"""Reading what a visitor gives it: clips trimmed tight to the word, any sample rate, an open microphone with
nobody speaking; and the data machinery for more real voices (loader, speaker-disjoint split, sparse speakers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.core.paths import bundled, resources_dir
from explorer.papers.transducer import augment as G
from explorer.papers.transducer import data as D
from explorer.papers.transducer import testsets as T
from explorer.papers.transducer.decode import decode_utterance
from explorer.papers.transducer.evaluate import edit_distance, reference_from_name
from explorer.papers.transducer.features import read_audio
from explorer.papers.transducer.model import DEFAULT_CONFIG, build

DEMOS = sorted((resources_dir() / "transducer").glob("*.wav"))
CKPT = bundled("transducer_fsdd_online.safetensors")
needs_model = pytest.mark.skipif(not CKPT.exists() or not DEMOS, reason="bundled transducer model or demos missing")


@pytest.fixture(scope="module")
def model():
    from explorer.core.checkpoints import load_model

    torch.set_num_threads(1)
    return load_model(CKPT, "transducer", build)[0]


def _digits(model, audio: np.ndarray):
    return decode_utterance(model, torch.from_numpy(np.asarray(audio, np.float32)))[0]


@needs_model
def test_a_clip_trimmed_tight_to_its_words_keeps_its_digits(model):
    """The end-of-input silence lets the last word's block be decoded although nothing follows the word."""
    errors = n = 0
    for f in DEMOS:
        ref = reference_from_name(f)
        tight = D.trim(read_audio(f), -35.0, pad=0)
        assert len(tight) < len(read_audio(f))
        errors += edit_distance(ref, _digits(model, tight))
        n += len(ref)
    assert errors <= max(1, n // 40), f"{errors} errors in {n} digits"


@needs_model
def test_16k_and_8k_files_give_the_same_digits(model, tmp_path):
    import soundfile as sf
    from scipy.signal import resample_poly

    for f in DEMOS[:3]:
        x8 = read_audio(f)
        sf.write(str(tmp_path / "a8.wav"), x8, 8000, subtype="PCM_16")
        sf.write(str(tmp_path / "a16.wav"), resample_poly(x8, 2, 1).astype(np.float32), 16000, subtype="PCM_16")
        assert _digits(model, read_audio(tmp_path / "a16.wav")) == _digits(model, read_audio(tmp_path / "a8.wav"))


@needs_model
@pytest.mark.parametrize("case", list(T.open_microphone_cases(seconds=0.1)))
def test_an_open_microphone_with_nobody_speaking_stays_silent(model, case):
    from explorer.papers.transducer.decode import StreamingRecognizer

    audio = T.open_microphone_cases()[case]
    assert _digits(model, audio) == []
    rec = StreamingRecognizer(model)  # the live path, in 40 ms chunks
    for i in range(0, len(audio), 320):
        rec.accept(audio[i : i + 320])
    rec.finish()
    assert rec.digits == []


@needs_model
def test_streaming_with_the_end_of_input_silence_equals_the_whole_file(model):
    from explorer.papers.transducer.decode import StreamingRecognizer

    audio = D.trim(read_audio(DEMOS[0]), -35.0, pad=0)
    rec = StreamingRecognizer(model)
    for i in range(0, len(audio), 333):
        rec.accept(audio[i : i + 333])
    done = rec.finish()
    assert rec.digits == _digits(model, audio)
    assert done["frames"].shape[0] == 0  # the silence is not drawn as heard audio
    assert all(b["end_s"] <= len(audio) / 8000 + 1e-9 for b in done["blocks"])


def test_nonspeech_utterances_have_no_digits_and_stay_in_range():
    rng = np.random.default_rng(1)
    for _ in range(20):
        u = G.nonspeech_utterance(rng)
        assert u.digits == [] and u.bounds == [] and 0.5 <= len(u.audio) / 8000 <= 4.0
        assert np.isfinite(u.audio).all() and np.abs(u.audio).max() < 1.0
    src = G.UtteranceSource([D.Clip(np.ones(800, np.float32), d, "theo", 0) for d in range(10)], nonspeech_weight=1.0)
    assert src.sample(rng).digits == []


def test_training_on_empty_utterances_runs():
    from explorer.papers.transducer.train import TrainData, fit

    rng = np.random.default_rng(0)
    clips = [D.Clip((rng.standard_normal(1600) * 0.1).astype(np.float32), d, "theo", 0) for d in range(10)]
    src = G.UtteranceSource(clips, G.Augment(p_tight=0.5), nonspeech_weight=0.5)
    model = build(dict(DEFAULT_CONFIG, enc_hidden=8, dec_hidden=8, att_hidden=8, embed=4))
    hist = fit(model, TrainData(src), "cpu", dict(steps=3, batch=4))
    assert hist["steps_done"] == 3 and np.isfinite(hist["final_loss"])


def _write(folder, name, seconds=0.4, sr=16000):
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    x = np.concatenate([np.zeros(sr // 4), 0.3 * np.sin(2 * np.pi * 300 * t), np.zeros(sr // 4)])
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / name), x.astype(np.float32), sr)


def test_more_voices_are_read_from_any_folder_trimmed_and_resampled(tmp_path):
    _write(tmp_path / "sc", "3_sc1a2b3c4d_0.wav")
    _write(tmp_path / "sc", "7_sc1a2b3c4d_1.wav", sr=8000)
    _write(tmp_path / "other", "5_jason_2.wav", sr=44100)
    _write(tmp_path / "other", "5_jason_3.wav", seconds=0.01)  # too short: skipped
    (tmp_path / "other" / "1_jason_4.wav").write_bytes(b"RIFF junk")  # unreadable: skipped
    (tmp_path / "other" / "notes.wav").write_bytes(b"")  # not named like a digit: ignored
    clips, skipped = D.load_digit_folders([tmp_path])
    assert sorted((c.digit, c.speaker) for c in clips) == [(3, "sc1a2b3c4d"), (5, "jason"), (7, "sc1a2b3c4d")]
    assert len(skipped) == 2
    for c in clips:  # 0.4 s of tone, trimmed from 0.9 s, at 8 kHz
        assert 0.38 * 8000 <= len(c.audio) <= 0.45 * 8000
    only, _ = D.load_digit_folders([tmp_path], only_speakers={"jason"})
    assert {c.speaker for c in only} == {"jason"}


def test_speaker_split_is_disjoint_and_fixed_by_the_names():
    names = [f"sc{i:08x}" for i in range(100)]
    train, test = D.split_speakers(names, 0.25)
    assert len(test) == 25 and not set(train) & set(test) and sorted(train + test) == sorted(names)
    assert D.split_speakers(list(reversed(names)) + names[:3], 0.25) == (train, test)  # order, repeats
    assert D.split_speakers(names, 0.25, salt="other") != (train, test)


def test_sparse_speakers_give_short_strings_of_their_own_digits_and_get_their_share():
    rng = np.random.default_rng(0)
    fsdd = [D.Clip(np.ones(800, np.float32), d, "theo", 0) for d in range(10)]
    sparse = [
        D.Clip(np.ones(800, np.float32), 4, "scaaaa", 0),
        D.Clip(np.ones(800, np.float32), 9, "scaaaa", 1),
        D.Clip(np.ones(800, np.float32), 2, "scbbbb", 0),
    ]
    src = G.UtteranceSource(fsdd + sparse, more=["scaaaa", "scbbbb"], more_weight=0.5)
    assert set(src.speakers) == {"theo", "scaaaa", "scbbbb"}
    p = dict(zip(src.speakers, src.p))
    assert p["theo"] == pytest.approx(0.5) and p["scaaaa"] == pytest.approx(0.25)
    for _ in range(50):
        u = src.sample(rng)
        if u.speaker == "scaaaa":
            assert 1 <= len(u.digits) <= 3 and set(u.digits) <= {4, 9}
        if u.speaker == "scbbbb":
            assert set(u.digits) == {2}
    # without `more`, a speaker lacking digits is left out as before
    assert G.UtteranceSource(fsdd + sparse).speakers == ["theo"]


def test_tight_utterances_start_and_end_at_their_words():
    rng = np.random.default_rng(3)
    by_digit = {d: [D.Clip(np.full(800, 0.1, np.float32), d, "theo", 0)] for d in range(10)}
    aug = G.Augment(p_tight=1.0, p_noise=0.0, speed=(1.0, 1.0))
    for _ in range(10):
        u = G.build_utterance(rng, by_digit, aug)
        assert u.bounds[0][0] <= 0.02 * 8000 and len(u.audio) - u.bounds[-1][1] <= 0.02 * 8000


def test_the_unheard_speakers_scores_carry_their_counts(tmp_path):
    from types import SimpleNamespace

    from explorer.papers.transducer.train import unheard_metrics

    from .helpers import TINY, write_fake_fsdd

    torch.manual_seed(0)
    write_fake_fsdd(tmp_path / "more", speakers=("scabc123",), n=1)
    m = build(dict(TINY)).eval()
    out = unheard_metrics(m, SimpleNamespace(more_data=[tmp_path / "more"], eval_utts=2), ["scabc123"])
    iso, conn = out["unheard_isolated"], out["unheard_connected"]
    assert iso["scored"] == 10 and 0 <= iso["wrong_clips"] <= iso["digit_errors"]
    assert out["unheard_isolated_digit_error_rate"] == pytest.approx(iso["digit_errors"] / 10)
    assert conn["utterances"] == 4 and conn["digits"] > 0
    assert out["unheard_connected_digit_error_rate"] == pytest.approx(conn["digit_errors"] / conn["digits"])
