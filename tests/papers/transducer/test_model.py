import itertools

import numpy as np
import pytest
import torch

from explorer.papers.transducer import align as AL
from explorer.papers.transducer import model as M
from explorer.papers.transducer.augment import Augment, UtteranceSource, build_utterance
from explorer.papers.transducer.data import group_by_speaker_digit
from explorer.papers.transducer.decode import StreamingRecognizer, decode_utterance
from explorer.papers.transducer.evaluate import edit_distance
from explorer.papers.transducer.train import TrainData, fit, set_normalization

from .helpers import TINY, tone_clips


def _compositions(S, B, cap):
    for c in itertools.product(range(cap + 1), repeat=B):
        if sum(c) == S:
            yield c


def _split(targets, comp):
    out, i = [], 0
    for k in comp:
        out.append(list(targets[i : i + k]))
        i += k
    return out


def test_alignment_search_is_exact_when_scores_depend_on_block_and_position():
    """With a scorer whose log-probs depend only on (block, j), the DP must find the brute-force optimum."""
    torch.manual_seed(0)
    B, S, M_ = 4, 3, 3
    table = torch.log_softmax(torch.randn(B, S + 1, M.N_OUT) * 2, -1)
    targets = [[3, 1, 4]]

    def state0(n):
        return (torch.zeros(n, dtype=torch.long), torch.full((n,), M.SOS))

    def scorer(state, rows_u, b):
        j = state[0]
        return table[b, j], (j,)

    def feed(pre, tokens):
        j = pre[0] + (tokens != M.EOB).long()
        return (j, tokens)

    ((al, lp),) = AL.align_search(scorer, state0, feed, targets, [B], M_)
    best = None
    for comp in _compositions(S, B, M_ - 1):
        a = _split(targets[0], comp)
        s, j = 0.0, 0
        for b, ds in enumerate(a):
            for d in ds:
                s += float(table[b, j, d])
                j += 1
            s += float(table[b, j, M.EOB])
        if best is None or s > best[1]:
            best = (a, s)
    assert al == best[0]
    assert lp == pytest.approx(best[1], abs=1e-5)


def test_alignment_search_on_the_real_model_tiny_case():
    """Real transducer, 3 blocks, 2 targets: the DP's alignment is the brute-force best, and its score is the
    model's own log-probability of that alignment."""
    torch.manual_seed(3)
    m = M.build(dict(TINY, block=3)).eval()
    x = torch.randn(1, 27, 40)  # 9 encoder frames -> 3 blocks of 3
    enc, keys, enc_len, _ = m.encode(x, torch.tensor([27]))
    targets = [[7, 2]]
    ((al, lp),) = AL.best_alignments(m, enc, keys, enc_len, targets)
    scores = {}
    for comp in _compositions(2, 3, m.M - 1):
        a = _split(targets[0], comp)
        nll, _ = m.alignment_nll(enc, keys, enc_len, [a])
        scores[tuple(map(tuple, a))] = -float(nll)
    best = max(scores, key=scores.get)
    assert scores[tuple(map(tuple, al))] == pytest.approx(lp, abs=1e-4)
    assert tuple(map(tuple, al)) == best


def test_boundary_alignment_puts_digits_in_the_block_of_their_last_frame():
    m = M.build(TINY)  # W = 4 encoder frames = 12 feature frames = 960 samples
    n_enc = 20  # 5 blocks
    al = AL.boundary_alignment([900, 1000, 1900, 4790], [1, 2, 3, 4], n_enc, m)
    assert al == [[1], [2, 3], [], [], [4]]


@pytest.mark.parametrize(
    "extra",
    [
        dict(norm="global"),
        dict(norm="causal"),
        dict(norm="causal", ceps=8, dropout=0.3),
        dict(norm="causal", frontend="conv"),
        dict(norm="pcen", norm_gate=True),
    ],
    ids=["global", "causal", "causal-ceps-dropout", "causal-conv-frontend", "pcen"],
)
def test_decoding_never_looks_beyond_the_current_block(extra):
    torch.manual_seed(1)
    m = M.build(dict(TINY, **extra)).eval()
    rng = np.random.default_rng(0)
    groups = group_by_speaker_digit(tone_clips())
    u = build_utterance(rng, groups["tones"], Augment(min_digits=4, max_digits=4))
    audio = u.audio
    full_digits, full_em, n_enc = decode_utterance(m, torch.from_numpy(audio))
    # streaming: every block is decoded as soon as (and only when) its audio has arrived
    rec = StreamingRecognizer(m)
    fed, events = 0, []
    for i in range(0, len(audio), 97):
        chunk = audio[i : i + 97]
        fed += len(chunk)
        for ev in rec.accept(chunk)["blocks"]:
            assert m.block_end_sample(ev["block"], 10**9) <= fed
            events.append(ev)
    events += rec.finish()["blocks"]
    assert rec.decoder.emissions == full_em
    assert len(events) == m.n_blocks(n_enc)
    # truncating the audio after block k changes nothing in blocks < k (no look-ahead)
    for k in (1, 3, 5):
        cut = m.block_end_sample(k - 1, n_enc)
        d, em, _ = decode_utterance(m, torch.from_numpy(audio[:cut]))
        assert [e for e in full_em if e[1] < k] == [e for e in em if e[1] < k]
    # beam search keeps the same property for the best hypothesis' finished blocks
    d3, em3, _ = decode_utterance(m, torch.from_numpy(audio), beam=3)
    assert all(b < m.n_blocks(n_enc) for _, b in em3)


def _tiny_model_and_data(max_digits: int, n_norm: int):
    torch.manual_seed(0)
    data = TrainData(UtteranceSource(tone_clips(), Augment(min_digits=1, max_digits=max_digits, p_noise=0.0)), seed=0)
    m = M.build(TINY)
    set_normalization(m, data, n=n_norm)
    return m, data


def test_training_reduces_the_loss_and_offline_variant_runs():
    m, data = _tiny_model_and_data(3, 8)
    h = fit(m, data, "cpu", dict(steps=40, batch=8, lr=1e-2, log_every=1))
    first, last = h["loss"][0][1], h["final_loss"]
    assert last < 0.7 * first
    # DP-refreshed alignments run inside training too
    h2 = fit(m, data, "cpu", dict(steps=2, batch=4, align="dp", log_every=1))
    assert h2["dp_moved_final"] is not None
    off = M.build(dict(M.OFFLINE_CONFIG, **TINY))  # bidirectional encoder, same blocks
    assert not off.online and off.cfg["bidirectional"]
    set_normalization(off, data, n=4)
    fit(off, data, "cpu", dict(steps=2, batch=4))
    whole = M.build(dict(TINY, block=0, max_per_block=10))  # the whole utterance as one block
    assert not whole.online
    set_normalization(whole, data, n=4)
    fit(whole, data, "cpu", dict(steps=2, batch=4))
    d, em, n_enc = decode_utterance(whole.eval(), torch.from_numpy(data.batch(1)[0].audio))
    assert all(b == 0 for _, b in em)


def test_weight_average_becomes_the_model_and_keeps_the_last_iterate():
    m, data = _tiny_model_and_data(2, 4)
    h = fit(m, data, "cpu", dict(steps=6, batch=4, lr=1e-2, ema=0.5))
    last = h["last_iterate"]
    assert set(last) == set(m.state_dict())
    assert any(not torch.allclose(p, last[k]) for k, p in m.named_parameters())
    assert torch.equal(m.feat_mean, last["feat_mean"])  # buffers are not averaged
    assert "last_iterate" not in fit(m, data, "cpu", dict(steps=1, batch=2))


def test_ensemble_of_a_model_with_itself_is_the_model_and_streams_like_the_whole_file():
    torch.manual_seed(0)
    a = M.build(TINY).eval()
    b = M.build(dict(TINY, enc_hidden=12, attention="dot", norm="global")).eval()  # members may differ in sizes
    audio = build_utterance(np.random.default_rng(0), group_by_speaker_digit(tone_clips())["tones"]).audio
    x = torch.from_numpy(audio)
    assert decode_utterance(M.Ensemble([a, a]).eval(), x)[:2] == decode_utterance(a, x)[:2]
    ens = M.build({"ensemble": [a.cfg, b.cfg]})
    ens.members[0].load_state_dict(a.state_dict())
    ens.members[1].load_state_dict(b.state_dict())
    ens.eval()
    assert (
        ens.online
        and ens.M == a.M
        and set(ens.state_dict()) == {f"members.{i}.{k}" for i, m in enumerate((a, b)) for k in m.state_dict()}
    )
    digits, emissions, _ = decode_utterance(ens, x)
    rec = StreamingRecognizer(ens)
    for i in range(0, len(audio), 173):
        rec.accept(audio[i : i + 173])
    rec.finish()
    assert rec.decoder.emissions == emissions
    # the mixture: log of the members' mean probability
    st = ens.init_state(1)
    hb = torch.randn(1, 4, 16 + 12)
    kb = torch.randn(1, 4, 8 + 12)
    mb = torch.ones(1, 4, dtype=torch.bool)
    lp, att, _ = ens.step(st, hb, kb, mb)
    lpa = a.step(a.init_state(1), hb[..., :16], kb[..., :8], mb)[0]
    lpb = b.step(b.init_state(1), hb[..., 16:], kb[..., 8:], mb)[0]
    assert torch.allclose(lp.exp(), (lpa.exp() + lpb.exp()) / 2, atol=1e-6) and att.shape == (1, 4)
    with pytest.raises(ValueError, match="block"):
        M.Ensemble([a, M.build(dict(TINY, block=6))])
    with pytest.raises(ValueError, match="two"):
        M.Ensemble([a])


def test_edit_distance():
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance([1, 2], [2, 1]) == 2


def test_causal_normalisation_streams_exactly_and_removes_a_fixed_colouring():
    m = M.build(dict(TINY, norm="causal")).eval()
    assert m.cfg["norm"] == "causal"
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(8000 * 2) * 0.1).astype(np.float32)
    batch, _ = m.features([torch.from_numpy(audio)])
    for step in (37, 800, 5000):
        rec = StreamingRecognizer(m)
        got = np.concatenate([rec.accept(audio[i : i + step])["frames"] for i in range(0, len(audio), step)])
        np.testing.assert_allclose(got, batch[0, : len(got)].numpy(), atol=1e-4)
    # a fixed per-band offset (a microphone's colouring) fades out of the normalised features over time
    raw = m.logmel(torch.from_numpy(audio)[None])[0]
    shift = torch.linspace(-2.0, 2.0, raw.shape[1])
    a, b = m.normalize(raw), m.normalize(raw + shift)
    # after t frames only n0 / (n0 + t) of the offset is left (n0: the prior's weight in frames)
    n0, t = m.cfg["norm_prior"], raw.shape[0]
    expect = shift / m.feat_std * n0 / (n0 + t)
    torch.testing.assert_close(b[-1] - a[-1], expect, atol=1e-4, rtol=1e-3)
    assert float((a - b).abs()[-1].mean()) < 0.4 * float((a - b).abs()[0].mean())


def test_pcen_streams_exactly_and_levels_a_stationary_background_in_every_band():
    m = M.build(dict(TINY, norm="pcen", norm_gate=True)).eval()
    rng = np.random.default_rng(4)
    audio = (rng.standard_normal(8000 * 3) * 0.05).astype(np.float32)
    audio[8000:9200] = 0.0  # digital silence holds the smoother
    batch, _ = m.features([torch.from_numpy(audio)])
    for step in (37, 800, 5000):
        rec = StreamingRecognizer(m)
        got = np.concatenate([rec.accept(audio[i : i + step])["frames"] for i in range(0, len(audio), step)])
        np.testing.assert_allclose(got, batch[0, : len(got)].numpy(), atol=1e-4)
    # the smoother, step by step: M_t = 0.975 M_(t-1) + 0.025 E_t, held on digital silence
    raw = m.logmel(torch.from_numpy(audio)[None])[0].double()
    live = raw.mean(-1) > np.log(m.logmel.cfg.floor) + 1.0
    Mt, want = raw[0].exp(), []
    for t in range(raw.shape[0]):
        E = raw[t].exp()
        Mt = 0.975 * Mt + 0.025 * E if live[t] else Mt
        want.append((E / (1e-12 + Mt) ** 0.98 + 2.0) ** 0.5 - 2.0**0.5)
    torch.testing.assert_close(m.pcen(raw.float()).double(), torch.stack(want), atol=1e-4, rtol=1e-3)
    # the same noise 40-60 dB quieter in a band (a quiet microphone that also dulls the lows): the log-mel moves
    # by 9.2-13.8 in every band, PCEN by at most a fifth of its value (the M^0.02 left by alpha = 0.98)
    gain = torch.linspace(-4.6, 0.0, raw.shape[1]).double()
    quiet = m.pcen((raw + gain - 9.2).float())
    loud = m.pcen(raw.float())
    assert float((quiet - loud).abs().mean()) < 0.25 * float(loud.abs().mean())


def test_checkpoints_without_a_norm_key_read_as_global_and_new_models_are_causal():
    assert M.build({k: v for k, v in TINY.items() if k not in ("norm", "norm_prior")}).cfg["norm"] == "global"
    assert M.build({}).cfg["norm"] == "causal" == M.DEFAULT_CONFIG["norm"]
    old = M.build({k: v for k, v in TINY.items()})
    assert (
        old.cfg["fmin"] == 20.0
        and old.logmel.cfg.fmin == 20.0
        and M.build(dict(TINY, fmin=150.0)).logmel.cfg.fmin == 150.0
    )
    assert old.cfg["ceps"] == 0 and old.cfg["dropout"] == 0.0 and old.cfg["frontend"] == "linear"
    with pytest.raises(ValueError):
        M.build(dict(TINY, frontend="bogus"))
    with pytest.raises(ValueError):
        M.build(dict(TINY, norm="bogus"))
    with pytest.raises(ValueError):
        M.build(dict(TINY, ceps=TINY.get("n_mels", 40) + 1))


def test_cepstral_input_is_an_orthonormal_dct_of_the_bands():
    d = M.dct_matrix(40, 40)
    torch.testing.assert_close(d.t() @ d, torch.eye(40), atol=1e-5, rtol=0)
    x = torch.randn(3, 40)
    # a flat spectrum has only the 0th coefficient; smooth spectra live in the first few
    torch.testing.assert_close((torch.ones(1, 40) @ d)[0, 1:], torch.zeros(39), atol=1e-5, rtol=0)
    torch.testing.assert_close(x @ d @ d.t(), x, atol=1e-5, rtol=1e-4)
    m = M.build(dict(TINY, ceps=12))
    assert m.inp.in_features == 12 * m.cfg["stack"]


def test_augmented_features_keep_shapes_and_lengths():
    from explorer.papers.transducer.train import TRAIN_DEFAULTS, augmented_features

    m = M.build(dict(TINY, norm="causal"))
    rng = np.random.default_rng(0)
    groups = group_by_speaker_digit(tone_clips())
    utts = [build_utterance(rng, groups["tones"], Augment(min_digits=2, max_digits=3)) for _ in range(3)]
    x, lengths = augmented_features(m, utts, rng, TRAIN_DEFAULTS)
    ref, ref_len = m.features([torch.from_numpy(u.audio) for u in utts])
    assert x.shape == ref.shape and torch.equal(lengths, ref_len)
    assert torch.isfinite(x).all() and not torch.allclose(x, ref)
    src = UtteranceSource(tone_clips(), Augment(min_digits=1, max_digits=2, p_noise=0.0))
    data = TrainData(src, seed=0)
    set_normalization(m, data, n=4)
    h = fit(m, data, "cpu", dict(steps=3, batch=4, augment=True, log_every=1))
    assert h["steps_done"] == 3 and np.isfinite(h["final_loss"])


def _band_db(x, lo, hi, sr=8000):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return 10 * np.log10(spec[(f > lo) & (f < hi)].sum() + 1e-20)


def test_channel_shelf_cuts_the_band_above_its_corner_before_the_noise():
    from explorer.papers.transducer.augment import _shelf

    x = np.random.default_rng(1).standard_normal(40000).astype(np.float32)
    y = _shelf(x, 1000.0, -30.0)
    assert abs(_band_db(y, 100, 500) - _band_db(x, 100, 500)) < 0.5
    assert _band_db(y, 2000, 3500) - _band_db(x, 2000, 3500) == pytest.approx(-30.0, abs=1.0)
    assert np.argmax(np.correlate(y[:4000], x[:4000], "full")) == 3999  # zero phase: nothing moves
    # in an utterance: same digits and bounds, less signal above the corner
    groups = group_by_speaker_digit(tone_clips())["tones"]
    plain = Augment(p_noise=0.0, gain_db=(0.0, 0.0), level_db=(-20.0, -20.0))
    cut = Augment(
        p_noise=0.0,
        gain_db=(0.0, 0.0),
        level_db=(-20.0, -20.0),
        p_channel=1.0,
        shelf_hz=(600.0, 600.0),
        shelf_db=(-40.0, -40.0),
    )
    a = build_utterance(np.random.default_rng(3), groups, plain)
    b = build_utterance(np.random.default_rng(3), groups, cut)
    assert a.digits == b.digits and a.bounds == b.bounds
    assert _band_db(b.audio, 1500, 3500) < _band_db(a.audio, 1500, 3500) - 10


def _vowel(f1, f2, pitch=120.0, sr=8000, n=8000):
    from scipy.signal import lfilter

    x = np.zeros(n)
    x[:: int(sr / pitch)] = 1.0
    for f, bw in ((f1, 80.0), (f2, 100.0)):
        r = np.exp(-np.pi * bw / sr)
        x = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r], x)
    return (x / np.abs(x).max()).astype(np.float32)


def _first_formant(x, sr=8000):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    band = (f > 300) & (f < 1000)
    return f[band][spec[band].argmax()]


def _pitch_lag(x):
    seg = x[2000:4000]
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
    return 40 + int(np.argmax(ac[40:120]))


def test_formant_warp_moves_the_formants_not_the_pitch_or_the_timing():
    from explorer.papers.transducer.augment import _formant_warp

    x = _vowel(700.0, 1200.0)
    down, up = _formant_warp(x, 0.87), _formant_warp(x, 1.15)
    assert len(down) == len(up) == len(x)
    assert _first_formant(down) < _first_formant(x) - 60 and _first_formant(up) > _first_formant(x) + 60
    assert _pitch_lag(down) == _pitch_lag(up) == _pitch_lag(x)  # 120 Hz stays 120 Hz
    assert np.array_equal(_formant_warp(x, 1.0), x)
    # in an utterance: same digits and bounds
    groups = group_by_speaker_digit(tone_clips())["tones"]
    plain = Augment(p_noise=0.0, gain_db=(0.0, 0.0), level_db=(-20.0, -20.0))
    warped = Augment(p_noise=0.0, gain_db=(0.0, 0.0), level_db=(-20.0, -20.0), p_formant=1.0, formant=(1.1, 1.1))
    a = build_utterance(np.random.default_rng(3), groups, plain)
    b = build_utterance(np.random.default_rng(3), groups, warped)
    assert a.digits == b.digits and a.bounds == b.bounds and len(a.audio) == len(b.audio)
    assert not np.allclose(a.audio, b.audio)


def test_crop_shortens_digit_clips_at_both_ends_and_the_bounds_follow():
    groups = group_by_speaker_digit(tone_clips(n_per_digit=1))["tones"]  # one clip per digit: same clips
    plain = Augment(p_noise=0.0, gain_db=(0.0, 0.0), speed=(1.0, 1.0), gap=(0.1, 0.1), lead=(0.1, 0.1))
    cut = Augment(p_noise=0.0, gain_db=(0.0, 0.0), speed=(1.0, 1.0), gap=(0.1, 0.1), lead=(0.1, 0.1), p_crop=1.0)
    a = build_utterance(np.random.default_rng(5), groups, plain, digits=[1, 2, 3])
    b = build_utterance(np.random.default_rng(5), groups, cut, digits=[1, 2, 3])
    la = [e - s for s, e in a.bounds]
    lb = [e - s for s, e in b.bounds]
    assert all(y <= x and y >= 0.6 * x for x, y in zip(la, lb)) and sum(lb) < sum(la)
    assert all(np.abs(b.audio[s:e]).max() > 0 for s, e in b.bounds)


def test_synthetic_voices_share_the_synthetic_weight():
    clips = tone_clips(speaker="george") + tone_clips(speaker="espeak") + tone_clips(speaker="flite-slt")
    src = UtteranceSource(clips, espeak_weight=0.3)
    p = dict(zip(src.speakers, src.p))
    assert p["george"] == pytest.approx(0.7) and p["espeak"] == pytest.approx(0.15) == p["flite-slt"]


def test_more_voices_say_a_digit_at_the_model_rate():
    from explorer.papers.transducer.data import trim
    from explorer.papers.transducer.voices import more_voices, tts_say

    voices = more_voices()
    if not voices:
        pytest.skip("no MBROLA, Pico or RHVoice voice installed (Debian contrib/non-free; optional)")
    for engine, voice in voices[:: max(1, len(voices) // 4)]:
        slow = trim(tts_say("seven", engine, voice, stretch=1.3, f0=120))
        fast = trim(tts_say("seven", engine, voice, stretch=0.8, f0=200))
        assert slow.dtype == np.float32 and slow.ndim == 1 and np.abs(slow).max() > 0.01, (engine, voice)
        assert len(slow) > 1.15 * len(fast), (engine, voice)


@pytest.mark.skipif(
    __import__("shutil").which("flite") is None, reason="flite is not installed (apt-get install flite)"
)
def test_flite_says_a_digit_at_the_model_rate_with_the_requested_pitch_and_rate():
    from explorer.papers.transducer.voices import tts_say

    slow = tts_say("seven", "flite", "slt", stretch=1.3, f0=120)
    fast = tts_say("seven", "flite", "slt", stretch=0.8, f0=120)
    assert slow.dtype == np.float32 and slow.ndim == 1 and np.abs(slow).max() > 0.01
    assert 0.2 < len(fast) / 8000 < len(slow) / 8000 < 3.0


def test_extra_real_voices_are_read_when_installed_and_skipped_otherwise(tmp_path, monkeypatch):
    import soundfile as sf

    from explorer.papers.transducer import voices as V

    good, partial = tmp_path / "good", tmp_path / "partial"
    good.mkdir()
    partial.mkdir()
    rng = np.random.default_rng(0)
    from .helpers import tone_digit

    for d in range(10):
        sf.write(str(good / f"{d}.wav"), tone_digit(d, rng), 16000)
    sf.write(str(partial / "0.wav"), tone_digit(0, rng), 8000)
    monkeypatch.setattr(
        V,
        "EXTRA_VOICES",
        {"a": (str(good), "{d}.wav"), "b": (str(partial), "{d}.wav"), "c": (str(tmp_path / "missing"), "{d}.au")},
    )
    clips = V.extra_voice_clips()
    assert [c.digit for c in clips] == list(range(10)) and {c.speaker for c in clips} == {"a"}
    assert all(c.audio.dtype == np.float32 and len(c.audio) > 100 for c in clips)


def test_digital_silence_before_speech_does_not_move_the_running_mean():
    m = M.build(dict(TINY, norm="causal", norm_gate=True)).eval()
    rng = np.random.default_rng(5)
    speech = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    lead = np.zeros(80 * 150, np.float32)  # 1.5 s of exact zeros (a muted or null input)
    a, _ = m.features([torch.from_numpy(speech)])
    b, _ = m.features([torch.from_numpy(np.concatenate([lead, speech]))])
    n = a.shape[1] - 3
    # only the two frames that straddle the edge (part zeros, part speech) enter the mean
    assert float((b[0, -n:] - a[0, -n:]).abs().mean()) < 0.1
    ungated = M.build(dict(TINY, norm="causal", norm_gate=False)).eval()
    c, _ = ungated.features([torch.from_numpy(np.concatenate([lead, speech]))])
    assert float((c[0, -n:] - a[0, -n:]).abs().mean()) > 1.0  # without the gate the zeros drag the mean down
