"""Synthetic 'digits' (tone patterns) so the tests need neither FSDD nor espeak-ng."""

import numpy as np

from explorer.papers.transducer.data import Clip

SR = 8000


def tone_digit(d: int, rng, dur=0.3) -> np.ndarray:
    t = np.arange(int(SR * dur * rng.uniform(0.9, 1.1))) / SR
    f1, f2 = 300 + 250 * d, 500 + 180 * ((d * 3) % 10)
    x = np.sin(2 * np.pi * f1 * t) + 0.5 * np.sin(2 * np.pi * f2 * t)
    return (0.3 * x * np.hanning(len(t))).astype(np.float32)


def tone_clips(n_per_digit=3, speaker="tones", seed=0):
    rng = np.random.default_rng(seed)
    return [Clip(tone_digit(d, rng), d, speaker, i) for d in range(10) for i in range(n_per_digit)]


def write_fake_fsdd(folder, speakers=("george", "jackson"), n=6):
    import soundfile as sf

    rec = folder / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s in speakers:
        for d in range(10):
            for i in range(n):
                sf.write(str(rec / f"{d}_{s}_{i}.wav"), tone_digit(d, rng), SR, subtype="PCM_16")
    return folder


TINY = dict(enc_hidden=16, dec_hidden=16, embed=8, att_hidden=8, enc_layers=1, block=4, max_per_block=3)
