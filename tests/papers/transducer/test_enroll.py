"""Enrollment ("teach it my voice"): recordings checked and cut, a copy of the model fine-tuned, the panel switches
to it and back; no microphone gives a message and folder recordings still work."""

import numpy as np
import pytest
import soundfile as sf
import torch

from explorer.cli import main
from explorer.core.checkpoints import load_model, read_metadata, save_checkpoint
from explorer.core.errors import UserError
from explorer.core.paths import bundled
from explorer.papers.transducer import adapt as A
from explorer.papers.transducer.model import build

from .helpers import SR, TINY, tone_digit

FAST = dict(steps=2, batch=4, synthetic_weight=0.0, fluent_weight=0.0)


def _spoken(d, rng, lead=0.4):
    """A tone 'digit' between stretches of quiet, as a 2-second microphone take would hold it."""
    quiet = (0.001 * rng.standard_normal(int(lead * SR))).astype(np.float32)
    return np.concatenate([quiet, tone_digit(d, rng), quiet])


def _write_takes(folder, digits=range(10), rate=SR):
    from explorer.papers.transducer.features import resample

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for d in digits:
        sf.write(str(folder / f"{d}_me_0.wav"), resample(_spoken(d, rng), SR, rate), rate, subtype="PCM_16")
    return folder


def test_recordings_are_cut_to_the_word_and_odd_ones_get_a_clear_message():
    rng = np.random.default_rng(1)
    x = _spoken(4, rng)
    y = A.spoken_part(x, 4, "t")
    assert 0.25 * SR < len(y) < 0.5 * SR < len(x)  # the quiet around the word is gone
    with pytest.raises(UserError, match="silent"):
        A.spoken_part(np.zeros(SR, np.float32), 3, "t")
    with pytest.raises(UserError, match="too short"):
        A.spoken_part(np.r_[np.zeros(4000), 0.5 * np.ones(200), np.zeros(4000)].astype(np.float32), 3, "t")
    with pytest.raises(UserError, match="say only the"):
        A.spoken_part((0.3 * rng.standard_normal(5 * SR)).astype(np.float32), 3, "t")
    with pytest.raises(UserError, match="no recording of 7, 9"):
        A.enrollment_clips({d: [_spoken(d, rng)] for d in range(10) if d not in (7, 9)})


def test_enrollment_folder_any_rate_and_missing_digits(tmp_path):
    clips = A.read_enrollment_dir(_write_takes(tmp_path / "a", rate=44100))
    assert sorted(c.digit for c in clips) == list(range(10)) and {c.speaker for c in clips} == {A.ENROLLED}
    with pytest.raises(UserError, match="no recording of 5"):
        A.read_enrollment_dir(_write_takes(tmp_path / "b", digits=[d for d in range(10) if d != 5]))
    with pytest.raises(UserError, match="named like"):
        A.read_enrollment_dir(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "3_me_0.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(UserError, match="not a readable audio file"):
        A.read_enrollment_dir(tmp_path / "c")


def test_adapt_fine_tunes_a_copy_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build(TINY).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(2)
    clips = A.enrollment_clips({d: [_spoken(d, rng)] for d in range(10)})
    new, hist = A.adapt(model, clips, "cpu", FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items())
    assert not new.training and new.cfg == model.cfg
    assert hist["steps_done"] == 2 and hist["enrollment"]["clips"] == 10
    assert hist["enrollment"]["other_voices"] == 0


def test_the_enrolled_voice_gets_the_real_voices_share():
    from explorer.papers.transducer.augment import UtteranceSource
    from explorer.papers.transducer.data import Clip

    rng = np.random.default_rng(3)
    clips = A.enrollment_clips({d: [_spoken(d, rng)] for d in range(10)})
    synth = [Clip(tone_digit(d, rng), d, f"voice{v}", 0) for v in range(4) for d in range(10)]
    src = UtteranceSource(clips + synth, espeak_weight=0.2, real=[A.ENROLLED])
    assert src.p[src.speakers.index(A.ENROLLED)] == pytest.approx(0.8)


def test_cli_defaults_are_the_adaptation_defaults():
    from explorer.papers.transducer.cli import ADAPT_CLI_DEFAULTS

    assert {k: A.ADAPT_DEFAULTS[k] for k in ADAPT_CLI_DEFAULTS} == ADAPT_CLI_DEFAULTS


def test_transducer_adapt_cli_writes_a_checkpoint_the_app_opens(tmp_path, capsys):
    base = tmp_path / "tiny.safetensors"
    m = build(TINY)
    save_checkpoint(base, m.state_dict(), paper="transducer", model_config=m.cfg, metrics={"headline": "x", "x": 0})
    out = tmp_path / "me.safetensors"
    rc = main(
        [
            "transducer-adapt",
            "--enroll",
            str(_write_takes(tmp_path / "takes")),
            "--checkpoint",
            str(base),
            "--out",
            str(out),
            "--steps",
            "2",
            "--synth-weight",
            "0",
            "--fluent-weight",
            "0",
            "--threads",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and out.exists()
    meta = read_metadata(out)
    assert meta.paper == "transducer" and meta.data["enrollment_clips"] == 10
    assert meta.data["base_checkpoint"] == "tiny.safetensors" and "not measured" in meta.metrics["note"]
    assert meta.headline() == "adapted (no error rate for this voice)" and "10 takes" in meta.data["name"]
    from explorer.papers.transducer.infer import load_for_app

    bundle, _ = load_for_app(str(out), "cpu")
    assert bundle.online.cfg == m.cfg
    rc = main(
        [
            "transducer-adapt",
            "--enroll",
            str(_write_takes(tmp_path / "few", digits=[1, 2])),
            "--checkpoint",
            str(base),
            "--out",
            str(tmp_path / "x.safetensors"),
        ]
    )
    assert rc != 0 and "no recording of 0, 3, 4" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    off = build(dict(TINY, bidirectional=True))
    save_checkpoint(
        tmp_path / "off.safetensors",
        off.state_dict(),
        paper="transducer",
        model_config=off.cfg,
        metrics={"headline": "x", "x": 0},
    )
    rc = main(
        [
            "transducer-adapt",
            "--enroll",
            str(tmp_path / "takes"),
            "--checkpoint",
            str(tmp_path / "off.safetensors"),
            "--out",
            str(tmp_path / "y.safetensors"),
        ]
    )
    assert rc != 0 and "offline variant" in capsys.readouterr().err


needs_model = pytest.mark.skipif(
    not bundled("transducer_fsdd_online.safetensors").exists(),
    reason="the bundled transducer checkpoint is missing (train it first)",
)


@needs_model
def test_panel_adapts_to_recordings_switches_model_and_back(make_panel, qtbot, monkeypatch, tmp_path):
    from explorer.papers.transducer import panel as P

    monkeypatch.setattr(P, "audio_inputs", lambda: ([], None))
    panel = make_panel("transducer")
    panel.device_box.clear()  # as on a machine without any audio input
    shipped = panel.model
    dlg = panel.open_enrollment()
    dlg.config.update(FAST)
    assert not dlg.adapt_button.isEnabled()
    dlg.record()  # no microphone: a message, nothing breaks
    assert "No microphone" in dlg.status.text() and dlg._src is None
    assert not dlg.set_recording(3, np.zeros(SR, np.float32))  # silence is refused with a reason
    assert "silent" in dlg.status.text() and not dlg.recordings[3]
    dlg.load_folder(_write_takes(tmp_path / "takes", rate=16000))  # recordings from files instead
    qtbot.waitUntil(dlg.complete, timeout=20000)
    assert dlg.adapt_button.isEnabled()
    shown = []
    dlg.progress.valueChanged.connect(shown.append)
    dlg.adapt_button.click()
    qtbot.waitUntil(lambda: dlg.result is not None and not dlg.adapting, timeout=60000)
    assert shown == sorted(shown) and shown[-1] == 1000, shown  # one bar, forward only, full at the end
    assert dlg.status.text().startswith("Adapted in ")
    assert panel.model is not shipped and panel.model.online is dlg.result[0]
    assert panel.model.offline is shipped.offline
    assert panel.revert_button.isVisibleTo(panel) and "adapted to your voice" in panel.status_label.text()
    page = panel.parentWidget()
    while not hasattr(page, "checkpoint_bar"):
        page = page.parentWidget()
    bar = page.checkpoint_bar
    assert "adapted" in bar.data.text() and "no error rate" in bar.headline.text()
    panel.pace = 0.0
    panel.start()  # the adapted model streams like the shipped one
    qtbot.waitUntil(lambda: not panel.running, timeout=30000)
    assert panel.transcript.isdigit()
    dlg.save(tmp_path / "mine")
    qtbot.waitUntil(lambda: (tmp_path / "mine.safetensors").exists(), timeout=10000)
    model, meta = load_model(tmp_path / "mine.safetensors", "transducer", build, "cpu")
    assert meta.data["base_checkpoint"] == "transducer_fsdd_online.safetensors"
    panel.revert_adaptation()
    assert panel.model is shipped and not panel.revert_button.isVisibleTo(panel)
    assert "digit_error_rate" in bar.headline.text() and "adapted" not in bar.data.text()
    dlg.close()


@needs_model
def test_closing_the_dialog_cancels_the_adaptation_and_keeps_the_model(make_panel, qtbot, tmp_path):
    panel = make_panel("transducer")
    shipped = panel.model
    dlg = panel.open_enrollment()
    dlg.config.update(FAST, steps=100000)
    dlg.takes_box.setValue(2)
    rng = np.random.default_rng(4)
    for i in range(10):  # the prompts go round the digits, one take each
        assert dlg.current == i
        assert dlg.set_recording(dlg.current, _spoken(dlg.current, rng))
    assert (
        dlg.complete() and dlg.adapt_button.isEnabled() and dlg.current == 0 and "take 2 of 2" in dlg.take_label.text()
    )
    assert dlg.set_recording(0, _spoken(0, rng)) and dlg.current == 1
    dlg._select(0)
    assert dlg.set_recording(0, _spoken(0, rng)) and len(dlg.recordings[0]) == 2  # the oldest take goes
    dlg.save_takes(tmp_path / "mine")  # the takes can be kept and read back
    qtbot.waitUntil(lambda: "Saved 11 takes" in dlg.status.text(), timeout=10000)
    again = A.read_enrollment_dir(tmp_path / "mine")
    assert len(again) == 11 and sorted({c.digit for c in again}) == list(range(10))
    dlg.start_adapt()
    qtbot.waitUntil(lambda: dlg.progress.value() > 0 or "step" in dlg.status.text(), timeout=20000)
    dlg.close()
    qtbot.waitUntil(lambda: not panel.runner.is_busy("adapt"), timeout=20000)
    assert panel.model is shipped and dlg.result is None


@needs_model
def test_a_microphone_that_delivers_too_little_audio_gets_a_message(make_panel, qtbot):
    import time

    class Silent:  # a device that opened but sends (almost) nothing
        def stop(self):
            pass

        def deleteLater(self):
            pass

    panel = make_panel("transducer")
    dlg = panel.open_enrollment()
    dlg._src, dlg._io, dlg._fmt = Silent(), None, None
    dlg._chunks = [np.zeros(800, np.float32)]
    dlg._rec_t0 = time.monotonic() - 10
    dlg._tick()
    assert dlg._src is None and "delivered only 0.1 s" in dlg.status.text()
    assert not any(dlg.recordings.values())
    dlg.close()


def test_adaptation_progress_is_one_bar_that_only_moves_forward_with_time_left():
    """Regression: the bar ran to 99% for each practice-voice phase and the training, restarting at 1% each
    time; the dialog promised 2-3 minutes where a laptop took 6.5."""
    from explorer.papers.transducer.panel_enroll import INTRO, PREPARE_SHARE, AdaptProgress

    now = [100.0]
    prog = AdaptProgress(steps=600, clock=lambda: now[0])
    reports = (
        [(i / 400, "synthesizing espeak-ng digits") for i in range(1, 401, 40)]
        + [(i / 160, "synthesizing flite digits") for i in range(1, 161, 20)]
        + [(i / 160, "synthesizing festival digits") for i in range(80, 161, 20)]
        + [(i / 2000, "synthesizing fluent espeak-ng digit strings") for i in range(1, 2001, 250)]
        + [(s / 600, f"step {s} loss 0.5{s % 10} lr 1.0e-03 dp-moved 0.1") for s in range(1, 601, 7)]
        + [(1.0, "step 600 loss 0.41 lr 1.0e-04")]
    )
    values = []
    for frac, msg in reports:
        now[0] += 0.5
        values.append(prog.update(frac, msg))
    assert values == sorted(values) and 0 < values[0] and values[-1] == 1.0
    prepare = [v for v, (_, m) in zip(values, reports) if not m.startswith("step")]
    assert max(prepare) <= PREPARE_SHARE  # the practice voices take a tenth of the bar
    assert "training step 600 of 600" in prog.text and "passed" in prog.text
    prog2 = AdaptProgress(steps=600, clock=lambda: now[0])
    t0 = now[0]
    for s in (1, 60, 120):  # 2 s per step: 480 steps left take about 16 min
        now[0] = t0 + 2 * s
        prog2.update(s / 600, f"step {s} loss 1.0")
    assert "4:00 passed, about 16:00 left" in prog2.text, prog2.text
    now[0] += 65
    assert "5:05 passed" in prog2.elapsed_text()
    assert "2-3 minutes" not in INTRO and "time left" in INTRO


@needs_model
def test_the_dialog_shows_its_whole_introduction(make_panel, qtbot):
    """Regression: the dialog's layout shrank it below the width its introduction's height was measured for,
    so the last lines of the text were cut off."""
    panel = make_panel("transducer")
    dlg = panel.open_enrollment()
    qtbot.waitUntil(dlg.isVisible, timeout=5000)
    intro = dlg.intro
    assert intro.height() >= intro.heightForWidth(intro.width()), (intro.size(), intro.heightForWidth(intro.width()))
    assert "time left" in intro.text()
    dlg.close()
