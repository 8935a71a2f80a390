import numpy as np
import torch

from bench.experiments.transducer_warp import warp_ensemble
from explorer.papers.transducer import model as M
from explorer.papers.transducer.augment import build_utterance
from explorer.papers.transducer.data import group_by_speaker_digit
from explorer.papers.transducer.decode import decode_utterance
from tests.papers.transducer.helpers import TINY, tone_clips


def test_a_warp_ensemble_of_unwarped_copies_is_the_model_and_a_warp_changes_what_a_copy_hears():
    torch.manual_seed(0)
    model = M.build(TINY).eval()
    x = torch.from_numpy(build_utterance(np.random.default_rng(0), group_by_speaker_digit(tone_clips())["tones"]).audio)
    with torch.no_grad():
        same = warp_ensemble(model, [1.0, 1.0])
        feats, lengths = same.features([x])
        raw = model.logmel(model.with_flush(x)[None])[0]
        assert feats.shape == (1, raw.shape[0], 2 * model.cfg["n_mels"]) and int(lengths[0]) == raw.shape[0]
        assert torch.equal(feats[0, :, : model.cfg["n_mels"]], raw)
        assert decode_utterance(same, x)[:2] == decode_utterance(model, x)[:2]
        warped = warp_ensemble(model, [1.0, 0.9])
        bands = warped.features([x])[0][0].split(model.cfg["n_mels"], -1)
        assert torch.equal(bands[0], raw) and not torch.allclose(bands[1], raw)
        assert warped.online and len(decode_utterance(warped, x)) == 3
    assert torch.equal(model.logmel.fb, M.build(TINY).logmel.fb)  # the model itself is not touched
