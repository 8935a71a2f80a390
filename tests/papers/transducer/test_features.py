import numpy as np
import torch

from explorer.papers.transducer.features import (
    FeatureConfig,
    LogMel,
    StreamingLogMel,
    StreamResampler,
    mel_filterbank,
    resample,
)


def _reference_logmel(x, cfg):
    """Independent numpy computation: framing by index, periodic Hann, |rfft|^2, HTK-mel triangles."""
    n = 1 + (len(x) - cfg.win) // cfg.hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.win) / cfg.win)
    frames = np.stack([x[i * cfg.hop : i * cfg.hop + cfg.win] * win for i in range(n)])
    power = np.abs(np.fft.rfft(frames, n=cfg.n_fft)) ** 2

    def mel(f):
        return 1127.0 * np.log(1 + f / 700.0)  # same HTK scale, written with ln

    def inv(m):
        return 700.0 * (np.exp(m / 1127.0) - 1)

    pts = inv(np.linspace(mel(cfg.fmin), mel(cfg.sample_rate / 2), cfg.n_mels + 2))
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    fb = np.zeros((cfg.n_mels, len(freqs)))
    for m in range(cfg.n_mels):
        l, c, r = pts[m : m + 3]
        fb[m] = np.maximum(0, np.minimum((freqs - l) / (c - l), (r - freqs) / (r - c)))
    return np.log(power @ fb.T + cfg.floor)


def test_logmel_matches_reference_on_a_tone():
    cfg = FeatureConfig()
    t = np.arange(8000) / 8000.0
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    ours = LogMel(cfg)(torch.from_numpy(x))[0].numpy()
    ref = _reference_logmel(x.astype(np.float64), cfg)
    assert ours.shape == ref.shape == (1 + (8000 - 200) // 80, 40)
    loud = ref > ref.max() - 30  # compare where the energy is (float32 vs float64 at the noise floor)
    np.testing.assert_allclose(ours[loud], ref[loud], atol=2e-3)
    # the loudest band is the one whose centre is nearest 1 kHz
    fb = mel_filterbank(cfg)
    centre = fb.argmax(1) * cfg.sample_rate / cfg.n_fft
    assert abs(centre[ours.mean(0).argmax()] - 1000.0) < 70


def test_streaming_features_equal_batch_features():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000 * 2).astype(np.float32) * 0.1
    lm = LogMel()
    batch = lm(torch.from_numpy(x))[0]
    for chunks in ([1, 7, 79, 80, 81, 200, 333], [4000], [160] * 200):
        st = StreamingLogMel(lm)
        out, i, k = [], 0, 0
        while i < len(x):
            n = chunks[k % len(chunks)]
            out.append(st.push(x[i : i + n]))
            i += n
            k += 1
        got = torch.cat(out)
        assert got.shape == batch.shape
        torch.testing.assert_close(got, batch, atol=1e-5, rtol=1e-5)


def test_resampling_preserves_a_tone():
    t = np.arange(16000) / 16000.0
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, 16000, 8000)
    assert len(y) == 8000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 440) <= 1
    r = StreamResampler(16000, 8000)
    z = np.concatenate([r.push(x[i : i + 517]) for i in range(0, len(x), 517)])
    assert abs(len(z) - 8000) <= 1
    np.testing.assert_allclose(z[:7990], x[::2][:7990], atol=1e-4)


def test_vtlp_warp_is_identity_at_one_and_moves_a_tone_up_for_larger_factors():
    from explorer.papers.transducer.features import vtlp_warp

    f = np.linspace(0, 4000, 129)
    np.testing.assert_allclose(vtlp_warp(f, 1.0, 4000.0), f)
    for a in (0.88, 1.12):
        w = vtlp_warp(f, a, 4000.0)
        assert w[0] == 0 and abs(w[-1] - 4000.0) < 1e-9 and np.all(np.diff(w) > 0)  # monotone, ends fixed
        np.testing.assert_allclose(w[f < 2000], a * f[f < 2000])
    t = np.arange(8000) / 8000.0
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * 800.0 * t)).astype(np.float32))
    lm = LogMel()
    torch.testing.assert_close(lm(x, warp=1.0), lm(x))

    def peak(w):
        return int(lm(x, warp=w)[0].mean(0).argmax())

    assert peak(0.88) < peak(1.0) < peak(1.12)
