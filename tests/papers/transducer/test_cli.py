import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from explorer.cli import main
from explorer.core.paths import bundled, resources_dir

from .helpers import TINY, write_fake_fsdd

DEMOS = sorted((resources_dir() / "transducer").glob("*.wav"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.transducer.model import build

    p = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    m = build(TINY)
    save_checkpoint(p, m.state_dict(), paper="transducer", model_config=m.cfg, metrics={"headline": "x", "x": 0})
    return p


def test_demo_utterances_are_bundled():
    assert len(DEMOS) >= 3
    for f in DEMOS:
        assert f.name.split("_")[0].isdigit()
        info = sf.info(str(f))
        assert info.samplerate == 8000 and 1.0 < info.duration < 8.0  # fluent strings are short


def test_eval_audio_dir_json(tmp_path, tiny_ckpt, capsys):
    d = tmp_path / "wavs"
    d.mkdir()
    shutil.copy(DEMOS[0], d / DEMOS[0].name)
    x, sr = sf.read(str(DEMOS[1]), dtype="float32")
    from explorer.papers.transducer.features import resample

    y = resample(x, 8000, 16000)
    sf.write(str(d / ("_".join([DEMOS[1].name.split("_")[0], "stereo16k.wav"]))), np.stack([y, y], 1), 16000)
    (d / "123_broken.wav").write_bytes(b"RIFF....not really a wav")
    sf.write(str(d / "hello_noref.wav"), np.zeros(4000, np.float32), 8000)
    rc = main(["eval", "transducer", "--audio-dir", str(d), "--checkpoint", str(tiny_ckpt), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[:4] == ["files", "digit_error_rate", "sequence_accuracy", "real_time_factor"]
    assert out["files"] == 4 and out["scored"] == 2
    assert [e["file"] for e in out["errors"]] == ["123_broken.wav"]
    assert 0.0 <= out["digit_error_rate"] and out["real_time_factor"] > 0


def test_eval_errors_are_one_line(tmp_path, tiny_ckpt, capsys):
    assert main(["eval", "transducer", "--audio-dir", str(tmp_path / "nope"), "--checkpoint", str(tiny_ckpt)]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "transducer", "--audio-dir", str(tmp_path / "empty"), "--checkpoint", str(tiny_ckpt)]) == 2


def test_eval_with_several_checkpoints_decodes_with_their_ensemble(tmp_path, tiny_ckpt, capsys):
    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.transducer.model import build

    d = tmp_path / "wavs"
    d.mkdir()
    shutil.copy(DEMOS[0], d / DEMOS[0].name)
    rc = main(
        [
            "eval",
            "transducer",
            "--audio-dir",
            str(d),
            "--checkpoint",
            str(tiny_ckpt),
            "--checkpoint",
            str(tiny_ckpt),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"] == "tiny.safetensors + tiny.safetensors" and out["scored"] == 1
    other = tmp_path / "other.safetensors"
    m = build(dict(TINY, block=6))
    save_checkpoint(other, m.state_dict(), paper="transducer", model_config=m.cfg, metrics={"headline": "x", "x": 0})
    assert (
        main(["eval", "transducer", "--audio-dir", str(d), "--checkpoint", str(tiny_ckpt), "--checkpoint", str(other)])
        == 2
    )
    assert "cannot form an ensemble" in capsys.readouterr().err


def test_transcribe_streams_with_times(tiny_ckpt, capsys):
    rc = main(["transcribe", str(DEMOS[0]), "--checkpoint", str(tiny_ckpt), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    times = [e["time_s"] for e in out["emissions"]]
    assert times == sorted(times) and all(t <= out["audio_seconds"] + 1e-6 for t in times)
    assert out["transcript"] == "".join(str(e["digit"]) for e in out["emissions"])


def test_train_cli_tiny_with_holdout(tmp_path, capsys):
    data = write_fake_fsdd(tmp_path / "fsdd")
    out = tmp_path / "t.safetensors"
    rc = main(
        [
            "train",
            "transducer",
            "--data",
            str(data),
            "--holdout",
            "george",
            "--steps",
            "3",
            "--batch",
            "2",
            "--hidden",
            "16",
            "--block",
            "4",
            "--eval-utts",
            "1",
            "--espeak-weight",
            "0",
            "--fluent-weight",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["heldout_speaker"] == "george" and set(res["per_speaker_digit_error_rate"]) == {"george", "jackson"}
    assert res["digits"] > 0 and res["digit_error_rate"] == pytest.approx(res["digit_errors"] / res["digits"])
    from explorer.core.checkpoints import read_metadata

    meta = read_metadata(out)
    assert meta.data["train_speakers"] == ["jackson", "lucas", "nicolas", "theo"] and meta.data["holdout"] == "george"
    assert main(["train", "transducer", "--data", str(tmp_path / "missing")]) == 2


def test_train_cli_several_held_out_speakers(tmp_path, capsys):
    """Fewer real training voices (a learning curve over speakers): the error rate is pooled over the held-out."""
    data = write_fake_fsdd(tmp_path / "fsdd", speakers=("george", "jackson", "lucas"))
    out = tmp_path / "t.safetensors"
    rc = main(
        [
            "train",
            "transducer",
            "--data",
            str(data),
            "--holdout",
            "George, lucas",
            "--steps",
            "2",
            "--batch",
            "2",
            "--hidden",
            "16",
            "--block",
            "4",
            "--eval-utts",
            "1",
            "--espeak-weight",
            "0",
            "--fluent-weight",
            "0",
            "--ema",
            "0.9",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    per = res["per_speaker_digit_error_rate"]
    assert set(res["last_iterate_per_speaker_digit_error_rate"]) == set(per) and res["ema_decay"] == 0.9
    assert res["heldout_speaker"] == "george,lucas" and set(per) == {"george", "jackson", "lucas"}
    assert min(per["george"], per["lucas"]) - 1e-9 <= res["digit_error_rate"] <= max(per["george"], per["lucas"]) + 1e-9
    from explorer.core.checkpoints import read_metadata

    assert read_metadata(out).data["train_speakers"] == ["jackson", "nicolas", "theo"]
    assert main(["train", "transducer", "--data", str(data), "--holdout", "george,bob"]) == 2
    assert (
        main(
            [
                "train",
                "transducer",
                "--data",
                str(data),
                "--holdout",
                ",".join(["george", "jackson", "lucas", "nicolas", "theo"]),
            ]
        )
        == 2
    )


@pytest.mark.skipif(not bundled("transducer_fsdd_online.safetensors").exists(), reason="bundled checkpoint missing")
def test_bundled_model_reads_the_demo_utterances(capsys):
    """The shipped model on the bundled demo files (espeak-ng voices never used in training)."""
    rc = main(["eval", "transducer", "--audio-dir", str(DEMOS[0].parent), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == len(DEMOS) and not out["errors"]
    assert out["digit_error_rate"] <= 0.25, out


def _tiny_train(data, out, holdout, seed):
    args = ["train", "transducer", "--data", str(data), "--holdout", holdout, "--steps", "2", "--batch", "2"]
    args += ["--hidden", "16", "--block", "4", "--eval-utts", "1", "--espeak-weight", "0", "--fluent-weight", "0"]
    assert main([*args, "--seed", str(seed), "--out", str(out)]) == 0


def test_an_ensemble_is_written_as_one_checkpoint_scored_like_a_trained_model(tmp_path, capsys):
    from explorer.core.checkpoints import read_metadata
    from explorer.papers.transducer.decode import decode_utterance
    from explorer.papers.transducer.features import read_audio
    from explorer.papers.transducer.infer import load_checkpoints
    from explorer.papers.transducer.model import Ensemble, Transducer

    data = write_fake_fsdd(tmp_path / "fsdd")
    a, b, c, e = (tmp_path / f"{n}.safetensors" for n in "abce")
    _tiny_train(data, a, "george", 0)
    _tiny_train(data, b, "george", 1)
    _tiny_train(data, c, "jackson", 0)
    capsys.readouterr()
    base = ["transducer-ensemble", "--data", str(data), "--eval-utts", "1", "--threads", "1"]
    assert main([*base, "--checkpoint", str(a), "--checkpoint", str(b), "--out", str(e)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["members"] == ["a.safetensors", "b.safetensors"] and res["heldout_speaker"] == "george"
    assert res["headline"] == "digit_error_rate" and 0 <= res["digit_error_rate"] and res["real_time_factor"] > 0
    meta = read_metadata(e)
    assert meta.data["holdout"] == "george" and [m["checkpoint"] for m in meta.data["members"]] == res["members"]
    one, _, _ = load_checkpoints(str(e))
    two, _, _ = load_checkpoints([str(a), str(b)])
    assert isinstance(one, Ensemble)
    x = torch.from_numpy(read_audio(DEMOS[0]))
    assert decode_utterance(one, x)[0] == decode_utterance(two, x)[0]
    # members that hold out other speakers, an ensemble as a member, training on from an ensemble: one line each
    assert main([*base, "--checkpoint", str(a), "--checkpoint", str(c), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "hold out different speakers" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(e), "--checkpoint", str(a), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "already an ensemble" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(a), "--out", str(tmp_path / "z.safetensors")]) == 2
    train = ["train", "transducer", "--data", str(data), "--steps", "1", "--batch", "2", "--eval-utts", "1"]
    assert main([*train, "--init", str(e), "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "an ensemble trains no further" in capsys.readouterr().err
    # enrollment adapts the ensemble's first member alone
    from explorer.papers.transducer.adapt import adapt, read_enrollment_dir

    clips = read_enrollment_dir(data / "recordings")
    cfg = dict(steps=1, batch=2, synthetic_weight=0.0, fluent_weight=0.0)
    new, _ = adapt(one, clips, "cpu", cfg)
    assert isinstance(new, Transducer) and new.cfg == one.members[0].cfg
