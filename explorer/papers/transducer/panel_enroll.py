""" "Teach it my voice": record each digit a few times (or load recordings), then adapt the model in a worker.

The dialog only records (the GUI thread moves microphone bytes into a list for two seconds) and shows progress;
cutting, checking and fine-tuning are :mod:`.adapt` (plain PyTorch), run by the panel's task runner. When the
adaptation finishes, the panel switches to the adapted model and can switch back.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from explorer.core.errors import UserError
from explorer.ui.dialogs import remember_folder, start_folder
from explorer.ui.widgets.small import bold_font, level_meter

from .adapt import ADAPT_DEFAULTS, adapt_for_app, clips_of, take_from_recording, warm_imports
from .data import DIGIT_WORDS
from .features import SAMPLE_RATE
from .panel_mic import close_microphone, decode_pcm, no_mic_message, open_microphone

RECORD_S = 2.0
RECORD_WAIT_S = 3.0  # how much longer to wait for a slow device's samples
INTRO = (
    "Say the digit shown, alone, after pressing <b>Record</b> (or Space); the prompts go round 0-9 once per "
    "take. Then <b>Adapt</b>: the model fine-tunes itself on your takes in the background and the tab switches "
    "to it. That takes a few minutes: about 2 on a fast, idle CPU, 6-7 on a laptop or a busy machine, and "
    "longer the first time, while the practice voices are synthesized; the window shows the time passed and "
    "an estimate of the time left.<br><br>On FSDD speakers it never heard, the model misreads {before} of "
    "the digits; after one take of each digit {after1}, after three {after3} "
    "(<i>bench/experiments/transducer_enroll.py</i>)."
)
# measured by bench/experiments/transducer_enroll.py (mean over the five leave-one-out folds); see the README
MEASURED = {"before": "12.7%", "after1": "6-8%", "after3": "5-6%"}
DEFAULT_TAKES = 3
ENROLL_DIR_KEY = "transducer_enroll_dir"
INTRO_W = 640


PREPARE_SHARE = 0.1  # of the progress bar: synthesizing and loading the practice voices (the rest: training)


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}"


class AdaptProgress:
    """One progress bar over the whole adaptation, that only moves forward, with time passed and time left.

    :func:`.adapt.adapt` reports several phases that each run from 0 to 1: the practice voices (espeak-ng digits,
    other engines' digits, fluent strings; quick when cached) and then the training steps ("step N …"). Each
    preparation phase takes half of what is left of the first PREPARE_SHARE of the bar, training the rest; the
    time left is estimated from the training's pace so far."""

    def __init__(self, steps: int, clock=time.monotonic) -> None:
        self.steps = max(1, int(steps))
        self.clock = clock
        self.t0 = clock()
        self.value = 0.0  # 0..1, never decreasing
        self._phase: str | None = None
        self._last_f = 0.0
        self._phase_lo, self._phase_hi = 0.0, PREPARE_SHARE / 2
        self._train_start: tuple | None = None  # (time, fraction) of the first training report
        self.text = "preparing the practice voices…"

    def update(self, fraction: float | None, message: str = "") -> float:
        """A report from the worker -> the bar's value (0..1)."""
        msg = (message or "").strip()
        now = self.clock()
        m = re.match(r"step (\d+)", msg)
        if m:
            f = min(1.0, max(0.0, fraction if fraction is not None else int(m.group(1)) / self.steps))
            if self._train_start is None:
                self._train_start = (now, f)
            target = PREPARE_SHARE + (1.0 - PREPARE_SHARE) * f
            t_start, f_start = self._train_start
            left = ""
            if f - f_start > 0.01 and now > t_start:
                rest = (1.0 - f) * (now - t_start) / (f - f_start)
                left = f", about {_clock(rest)} left"
            self.text = f"training step {m.group(1)} of {self.steps}: {_clock(now - self.t0)} passed{left}"
        else:
            kind = re.sub(r"[\d%.,:()]+", "", msg).strip() or "preparing"
            f = min(1.0, max(0.0, fraction or 0.0))
            if kind != self._phase or f < self._last_f - 0.05:  # a new phase: half of what is left of the share
                if self._phase is not None:
                    self._phase_lo = self._phase_hi
                    self._phase_hi += (PREPARE_SHARE - self._phase_hi) / 2
                self._phase = kind
            self._last_f = f
            target = self._phase_lo + (self._phase_hi - self._phase_lo) * f
            self.text = (
                f"preparing the practice voices ({msg or 'loading'}): {_clock(now - self.t0)} passed; "
                "the training comes next"
            )
        self.value = max(self.value, min(1.0, target))
        return self.value

    def elapsed_text(self) -> str:
        """The status line with the time passed brought up to date (called every second)."""
        return re.sub(r"\d+:\d\d passed", f"{_clock(self.clock() - self.t0)} passed", self.text, count=1)


class EnrollDialog(QDialog):
    adapted = Signal(object, object)  # adapted model, training history

    def __init__(self, panel, config: dict | None = None) -> None:
        super().__init__(panel)
        self.panel = panel
        self.config = dict(ADAPT_DEFAULTS, **(config or {}))
        self.recordings: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
        self.current = 0
        self.adapting = False
        self.result = None  # (model, history) after a successful adaptation
        self._src = self._io = self._fmt = None
        self._chunks: list[np.ndarray] = []
        self._rec_t0 = 0.0
        self._from = None  # the panel's model the running adaptation started from
        self.adapt_progress: AdaptProgress | None = None
        self.setWindowTitle("Teach it your voice")
        self._build_ui()
        self.layout().setSizeConstraint(QLayout.SetMinimumSize)  # room for the wrapped introduction
        self._select(0)
        # the resampler (scipy.signal) and the training code are imported in a worker now, not by the GUI thread
        # on the first take from a 48 kHz microphone or at the first adaptation
        panel.runner.submit(warm_imports, key="enroll-warm", name="enrollment imports")

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        intro = QLabel(INTRO.format(**MEASURED))
        intro.setWordWrap(True)
        # the dialog is never narrower than INTRO_W plus margins (its layout sets its minimum size), and at that
        # width the wrapped text gets all its lines
        intro.setMinimumWidth(INTRO_W)
        intro.setMinimumHeight(intro.heightForWidth(INTRO_W))
        self.intro = intro
        lay.addWidget(intro)
        row = QHBoxLayout()
        self.digit_buttons = []
        for d in range(10):
            b = QPushButton(str(d))
            b.setCheckable(True)
            b.setMinimumWidth(40)
            b.setToolTip(f"{d} ({DIGIT_WORDS[d]}): not recorded yet; click to record it")
            b.clicked.connect(lambda _=False, d=d: self._select(d))
            row.addWidget(b)
            self.digit_buttons.append(b)
        lay.addLayout(row)
        self.prompt = QLabel("")
        self.prompt.setFont(bold_font(26))
        self.prompt.setAlignment(Qt.AlignCenter)
        lay.addWidget(self.prompt)
        self.take_label = QLabel("")
        self.take_label.setAlignment(Qt.AlignCenter)
        lay.addWidget(self.take_label)
        grid = QGridLayout()
        self.record_button = QPushButton("Record")
        self.record_button.setToolTip(f"Record {RECORD_S:.0f} seconds from the microphone chosen in the tab (Space)")
        self.record_button.clicked.connect(self.record)
        self.record_bar = QProgressBar()
        self.record_bar.setRange(0, 100)
        self.record_bar.setTextVisible(False)
        self.record_bar.setToolTip("Recording time")
        self.level = level_meter()
        self.load_button = QPushButton("Load recordings…")
        self.load_button.setToolTip(
            "Use recordings from a folder instead: files named like 3_you_0.wav (the digit "
            "before the first underscore), any sample rate"
        )
        self.load_button.clicked.connect(self._ask_folder)
        grid.addWidget(self.record_button, 0, 0)
        grid.addWidget(self.record_bar, 0, 1)
        grid.addWidget(QLabel("level"), 0, 2)
        grid.addWidget(self.level, 0, 3)
        grid.addWidget(self.load_button, 0, 4)
        self.takes_box = QSpinBox()
        self.takes_box.setRange(1, 5)
        self.takes_box.setValue(DEFAULT_TAKES)
        self.takes_box.setToolTip(
            "Recordings of each digit to ask for: more takes, fewer errors (one take: about 10 s of speech)"
        )
        self.takes_box.valueChanged.connect(lambda _: (self._select(self._next_digit(-1)), self._update_buttons()))
        grid.addWidget(QLabel("takes of each digit"), 1, 3)
        grid.addWidget(self.takes_box, 1, 4)
        self.save_takes_button = QPushButton("Save takes…")
        self.save_takes_button.setToolTip(
            "Write your takes to a folder as WAV files (3_you_0.wav, …), to adapt "
            "again later with Load recordings… or nips-explorer transducer-adapt"
        )
        self.save_takes_button.clicked.connect(self._ask_save_takes)
        grid.addWidget(self.save_takes_button, 1, 0)
        grid.setColumnStretch(1, 1)
        lay.addLayout(grid)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setToolTip("Adaptation progress")
        lay.addWidget(self.progress)
        buttons = QHBoxLayout()
        self.adapt_button = QPushButton("Adapt the model")
        self.adapt_button.setToolTip("Fine-tune a copy of the loaded model on your recordings (in the background)")
        self.adapt_button.clicked.connect(self.start_adapt)
        self.cancel_button = QPushButton("Cancel adapting")
        self.cancel_button.clicked.connect(self.cancel_adapt)
        self.save_button = QPushButton("Save adapted model…")
        self.save_button.setToolTip("Keep the adapted model as a checkpoint file (open it later with Ctrl+O)")
        self.save_button.clicked.connect(self._ask_save)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        for w in (self.adapt_button, self.cancel_button, self.save_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay.addLayout(buttons)
        QShortcut(QKeySequence(Qt.Key_Space), self, activated=self.record)
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)
        self._clock_timer = QTimer(self)  # the time passed, brought up to date while adapting
        self._clock_timer.setInterval(1000)
        self._clock_timer.timeout.connect(self._tick_clock)
        self._update_buttons()

    @property
    def takes(self) -> int:
        return self.takes_box.value()

    def complete(self) -> bool:
        """Every digit has at least one take: enough to adapt."""
        return all(self.recordings[d] for d in range(10))

    def _next_digit(self, after: int) -> int:
        """The digit with the fewest takes, the first after ``after`` among equals (prompts go round 0-9)."""
        order = [(after + 1 + i) % 10 for i in range(10)]
        return min(order, key=lambda d: len(self.recordings[d]))

    def _select(self, d: int) -> None:
        if self._src is not None:
            return
        self.current = d
        for i, b in enumerate(self.digit_buttons):
            b.setChecked(i == d)
        n = len(self.recordings[d])
        self.prompt.setText(f"Say:  {d}  ({DIGIT_WORDS[d]})")
        self.take_label.setText(
            f"take {n + 1} of {self.takes}"
            if n < self.takes
            else f"all {self.takes} takes of {d} recorded; recording it again replaces the oldest"
        )

    def _update_buttons(self) -> None:
        recording = self._src is not None
        for d, b in enumerate(self.digit_buttons):
            n = len(self.recordings[d])
            b.setText(f"{d} " + "✓" * min(n, self.takes) if n else str(d))
            b.setStyleSheet("background: #cfe8cf;" if n >= self.takes else "background: #eef6ee;" if n else "")
            b.setToolTip(
                f"{d} ({DIGIT_WORDS[d]}): {n} take(s) recorded; click to record "
                + ("another" if n < self.takes else "it again (replaces the oldest take)")
            )
            b.setEnabled(not recording and not self.adapting)
        self.record_button.setEnabled(not recording and not self.adapting)
        self.load_button.setEnabled(not recording and not self.adapting)
        self.takes_box.setEnabled(not recording and not self.adapting)
        self.save_takes_button.setEnabled(any(self.recordings.values()) and not recording)
        self.adapt_button.setEnabled(
            self.complete() and not recording and not self.adapting and self.panel.model is not None
        )
        self.cancel_button.setEnabled(self.adapting)
        self.save_button.setEnabled(self.result is not None and not self.adapting)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "color: #333;")
        self.status.setText(text)

    # ------------------------------------------------------------------ recordings
    def set_recording(self, digit: int, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bool:
        """Keep a take of ``digit`` (any rate) if it holds a spoken word (the oldest goes once there are
        ``takes``); says why not otherwise."""
        try:
            x = take_from_recording(audio, sample_rate, digit, "microphone")
        except UserError as exc:
            self._say(str(exc), error=True)
            return False
        self.recordings[digit] = (self.recordings[digit] + [x])[-self.takes :]
        self.result = None
        have = sum(min(len(v), self.takes) for v in self.recordings.values())
        msg = f"Recorded {digit} ({len(x) / SAMPLE_RATE:.2f} s of sound); {have} of {10 * self.takes} takes. "
        if have >= 10 * self.takes:
            msg += "All recorded: adapt the model."
        elif self.complete():
            msg += "Every digit has a take: you can adapt now, or record more takes for fewer errors."
        self._say(msg)
        self._select(self._next_digit(digit))
        self._update_buttons()
        return True

    def record(self) -> None:
        if self._src is not None or self.adapting:
            return
        if self.panel.device_box.count() == 0:
            self.panel._populate_devices()  # a device plugged in since the tab looked (as the live source does)
        dev = self.panel.device_box.currentData()
        if dev is None:
            self._say(no_mic_message("Load recordings from a folder instead."), error=True)
            return
        try:
            self._src, self._io, self._fmt = open_microphone(dev, self)
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        self._chunks = []
        self._rec_t0 = time.monotonic()
        self._io.readyRead.connect(self._read)
        self._timer.start()
        self._say(f"Listening… say {self.current} ({DIGIT_WORDS[self.current]})")
        self._update_buttons()

    def _read(self) -> None:
        if self._io is None:
            return
        x = decode_pcm(bytes(self._io.readAll().data()), self._fmt)
        if x is None:
            self._stop_mic()
            self._say(
                "The microphone delivers a sample format this app cannot read; choose another device in the tab.",
                error=True,
            )
            return
        if len(x):
            self._chunks.append(x)
            self.level.setValue(int(max(-60, min(0, 20 * np.log10(float(np.abs(x).max()) + 1e-9)))))

    def _tick(self) -> None:
        """Stop after RECORD_S seconds of *samples* (a sound server may deliver them late or in bursts), or after
        a few more seconds of waiting if the device delivers too little."""
        rate = self._fmt.sampleRate() if self._fmt is not None else SAMPLE_RATE
        self._read()
        got = sum(len(c) for c in self._chunks) / max(1, rate)
        self.record_bar.setValue(int(100 * min(1.0, got / RECORD_S)))
        waited = time.monotonic() - self._rec_t0
        if got < RECORD_S and waited < RECORD_S + RECORD_WAIT_S:
            return
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._stop_mic()
        if got < 0.5 * RECORD_S:
            self._say(
                f"The microphone delivered only {got:.1f} s of audio in {waited:.0f} s; check the device in "
                "the tab, or load recordings from a folder.",
                error=True,
            )
            return
        self.set_recording(self.current, audio, rate)

    def _stop_mic(self) -> None:
        self._timer.stop()
        close_microphone(self._src)
        self._src = self._io = self._fmt = None
        self.level.setValue(-60)
        self.record_bar.setValue(0)
        self._update_buttons()

    def _pick_folder(self, title: str) -> str:
        """A folder from the file dialog ('' when cancelled); the choice is remembered for next time."""
        path = QFileDialog.getExistingDirectory(self, title, start_folder(self.panel.context.settings, ENROLL_DIR_KEY))
        if path:
            remember_folder(self.panel.context.settings, ENROLL_DIR_KEY, path)
        return path

    def _ask_folder(self) -> None:
        path = self._pick_folder("Folder with recordings of each digit")
        if path:
            self.load_folder(path)

    def load_folder(self, path) -> None:
        """Read the recordings in a worker (files may be long or odd); keeps what was recorded if it fails."""
        from .adapt import read_enrollment_dir

        def done(clips):
            self.recordings = {d: [c.audio for c in clips if c.digit == d] for d in range(10)}
            self.result = None
            self._select(0)
            self._say(f"Loaded {len(clips)} recordings from {Path(path).name}: adapt the model.")
            self._update_buttons()

        self._say(f"Reading {path}…")
        self.panel.runner.submit(
            read_enrollment_dir,
            path,
            key="enroll-load",
            name="read enrollment",
            on_result=done,
            on_error=lambda exc, tb: self._say(
                str(exc) if isinstance(exc, UserError) else f"Could not read {path}: {exc}", error=True
            ),
        )

    def _ask_save_takes(self) -> None:
        path = self._pick_folder("Folder for your takes")
        if path:
            self.save_takes(path)

    def save_takes(self, folder) -> None:
        """Write the takes as ``<digit>_you_<i>.wav`` in a worker."""
        from .adapt import save_recordings

        clips = clips_of(self.recordings, "you")
        self.panel.runner.submit(
            save_recordings,
            clips,
            folder,
            key="enroll-save-takes",
            name="save takes",
            on_result=lambda files: self._say(f"Saved {len(files)} takes to {folder}"),
            on_error=lambda exc, tb: self._say(f"Could not save the takes: {exc}", error=True),
        )

    # ------------------------------------------------------------------ adaptation
    def start_adapt(self) -> None:
        if self.adapting or not self.complete() or self.panel.model is None:
            return
        clips = clips_of(self.recordings)  # each take was cut and checked when it was kept
        self._from = self.panel.base_model()
        cfg = dict(self.config)

        self.adapting = True
        self.progress.setValue(0)
        self.adapt_progress = AdaptProgress(cfg.get("steps") or ADAPT_DEFAULTS["steps"])
        self._say("Adapting… (the tab stays usable; closing this window cancels)")
        self._clock_timer.start()
        self._update_buttons()
        self.panel.runner.submit(
            adapt_for_app,
            self._from.online,
            clips,
            config=cfg,  # device: the panel's runner passes it, resolved in the worker
            key="adapt",
            name="transducer enrollment",
            on_progress=self._on_progress,
            on_result=self._on_adapted,
            on_error=self._on_failed,
            on_cancelled=self._on_cancelled,
            on_finished=self._on_finished,
        )

    def _on_progress(self, frac, msg) -> None:
        """One bar over the whole adaptation (the worker's phases each restart at 0), never moving back."""
        value = self.adapt_progress.update(frac, msg or "")
        self.progress.setValue(max(self.progress.value(), int(1000 * value)))
        self._say(f"Adapting: {self.adapt_progress.text}")

    def _tick_clock(self) -> None:
        if self.adapting and self.adapt_progress is not None:
            self._say(f"Adapting: {self.adapt_progress.elapsed_text()}")

    def _on_adapted(self, result) -> None:
        model, hist = result
        if self.panel.base_model() is not self._from:
            self._say("Another checkpoint was opened while adapting; adapt again to start from it.", error=True)
            return
        self.result = result
        self.progress.setValue(1000)
        self.adapted.emit(model, hist)
        took = self.adapt_progress.clock() - self.adapt_progress.t0 if self.adapt_progress else hist["wall_s"]
        self._say(
            f"Adapted in {_clock(took)} (min:s; {hist['steps_done']} training steps). The tab now uses the "
            "adapted model: try the microphone. 'Original model' in the tab switches back."
        )

    def _on_failed(self, exc, tb) -> None:
        self._say(
            str(exc) if isinstance(exc, UserError) else f"Adaptation failed: {type(exc).__name__}: {exc}", error=True
        )

    def _on_cancelled(self) -> None:
        if self.panel.runner.latest_cancelled("adapt"):
            self._say("Adaptation cancelled; the tab keeps its model.")

    def _on_finished(self) -> None:
        self.adapting = False
        self._clock_timer.stop()
        if self.result is None:
            self.progress.setValue(0)
        self._update_buttons()

    def cancel_adapt(self) -> None:
        if self.adapting:
            self.panel.runner.cancel("adapt")
            self._say("Cancelling the adaptation…")

    def _ask_save(self) -> None:
        if self.result is None:
            return
        start = start_folder(self.panel.context.settings, ENROLL_DIR_KEY)
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the adapted model", str(Path(start) / "my_voice.safetensors"), "Checkpoints (*.safetensors)"
        )
        if path:
            self.save(path)

    def save(self, path) -> None:
        from .adapt import save_adapted

        if not str(path).lower().endswith(".safetensors"):
            path = f"{path}.safetensors"
        model, hist = self.result
        meta = self.panel.base_meta()
        self.panel.runner.submit(
            save_adapted,
            path,
            model,
            meta,
            hist,
            key="enroll-save",
            name="save adapted model",
            on_result=lambda p: self._say(f"Saved {p}"),
            on_error=lambda exc, tb: self._say(f"Could not save: {exc}", error=True),
        )

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._stop_mic()
        self.cancel_adapt()
        super().closeEvent(event)
