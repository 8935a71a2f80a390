"""Neural Transducer tab: speak digits (or replay a file / a demo) and watch them appear block by block.

The GUI thread only moves audio bytes into a queue and draws; features, encoder and transducer run in a worker
(``infer.stream_path`` / ``infer.stream_queue``) that yields new spectrogram frames and finished blocks.
"""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from explorer.core.errors import UserError
from explorer.ui.dialogs import input_folder, remember_folder
from explorer.ui.messages import Msg
from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.small import bold_font, level_meter

from . import panel_mic
from .panel_mic import (
    LATE_SERVER_WHY,
    NO_MIC,  # noqa: F401 - the message, for callers of this module
    NO_MIC_WHY,
    OTHER_SOURCES,
    DeviceBox,
    audio_error,
    audio_inputs,
    close_microphone,
    decode_pcm,
    err_name,
    open_microphone,
)

WINDOW_S = 6.0  # seconds of spectrogram on screen
FRAME_S = 0.01  # log-mel hop
N_MELS = 40
SOURCES = ("Demo utterance", "WAV file", "Microphone")
PACES = (("real time", 1.0), ("2x", 2.0), ("4x", 4.0), ("as fast as possible", 0.0))
ATT_TITLE = "Attention of the latest emission over its block"
WAV_DIR_KEY = "transducer_wav_dir"


def demo_files() -> list[Path]:
    from explorer.core.paths import resources_dir

    d = resources_dir() / "transducer"
    return sorted(d.glob("*.wav")) if d.is_dir() else []


def demo_label(f: Path) -> str:
    """``7812121_en-gb-f5-fluent_0001.wav`` -> ``7812121  (en-gb-f5, fluent)``."""
    digits, _, rest = f.stem.partition("_")
    voice = rest.rsplit("_", 1)[0] if "_" in rest else rest
    if voice.endswith("-fluent"):
        voice = voice[: -len("-fluent")] + ", fluent"
    return f"{digits}  ({voice})" if voice else digits


class TransducerPanel(PaperPanel):
    class Messages(PaperPanel.Messages):
        no_model = Msg("No model is loaded: open a Neural Transducer checkpoint first.")
        no_demos = Msg("No demo utterances found in resources/transducer/.")
        no_demo_utterance = Msg("No demo utterance available.")
        no_microphone = Msg(NO_MIC_WHY + " {instead}")
        mic_server_too_late = Msg(LATE_SERVER_WHY + " {instead}")  # a sound server Qt started too early to see
        mic_unavailable = Msg("{reason}")  # open_microphone's words: busy, gone, or no recording support
        mic_bad_format = Msg("The microphone delivers an unsupported sample format ({format}); choose another device.")
        mic_stopped = Msg("The microphone stopped: {reason}.")

    def __init__(self, spec, context, parent=None):
        super().__init__(spec, context, parent)
        self.source_kind = SOURCES[0]
        self.wav_path: Path | None = None
        self.pace = 1.0
        self.running = False
        self.overruns = 0
        self.transcript = ""
        self.offline_text = ""
        self.last_summary = None
        self._stream_name = "the audio"  # what the last run streamed (a file name or a microphone)
        self._is_default_demo = False
        self._q: queue.Queue | None = None
        self._audio_source = None
        self._audio_io = None
        self._mic_format = None
        self._frames = np.zeros((0, N_MELS), np.float32)
        self._frame0 = 0  # index of the first frame kept in _frames
        self._t = 0.0
        self._dirty = False
        self._block_items: list = []
        self._base = None  # (bundle, meta) of the loaded checkpoint while an adapted model is in use
        self._enroll = None
        # The audio devices are first looked for when the microphone is chosen (not when the tab opens): Qt
        # looks for a sound server only once, so a server started after the tab was opened is still found.
        self._media_devices = None
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(33)
        self._refresh_timer.timeout.connect(self._refresh)

    # ------------------------------------------------------------------ UI
    def build_steps(self):
        """The widgets in pieces (the shell runs one per event-loop turn); then the redraw timer starts."""
        yield from self._build_ui()
        self.reveal_later(self.spec_plot, self.att_plot)
        self._refresh_timer.start()

    def _build_ui(self):
        row = QHBoxLayout()
        self.source_box = QComboBox()
        self.source_box.addItems(SOURCES)
        self.source_box.setToolTip(
            "Where the audio comes from: a built-in demo utterance, a WAV file replayed at "
            "real-time pace, or your microphone"
        )
        self.demo_box = QComboBox()
        for f in demo_files():
            self.demo_box.addItem(demo_label(f), str(f))
        self.demo_box.setToolTip(
            "Connected digits spoken by espeak-ng voices the model never heard in training, "
            "either digit by digit with pauses or fluently as one phrase; the digits before "
            "the voice name are the reference"
        )
        self.open_button = QPushButton("Open WAV…")
        self.open_button.setToolTip("Choose a WAV file (any sample rate, mono or stereo) to replay")
        self.file_label = QLabel("no file")
        self.device_box = DeviceBox()
        self.device_box.setToolTip("Microphone (audio input device); the list is refreshed each time it opens")
        self.device_box.opening.connect(self._populate_devices)
        self.refresh_devices = QPushButton("↻")
        self.refresh_devices.setToolTip("Look for audio input devices again (a microphone plugged in since)")
        self.refresh_devices.setMaximumWidth(32)
        self.level = level_meter(120)
        self.pace_box = QComboBox()
        for name, _ in PACES:
            self.pace_box.addItem(name)
        self.pace_box.setToolTip("Replay speed for files and demos (real time shows what live use looks like)")
        self.pace_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.pace_box.setMinimumContentsLength(9)
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start streaming the chosen source through the transducer")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop (for the microphone: finish the utterance and show the offline answer)")
        self.stop_button.setEnabled(False)
        self.teach_button = QPushButton("Teach it my voice…")
        self.teach_button.setToolTip(
            "Record each digit a few times (or load recordings) and adapt the model to your "
            "voice in the background (Ctrl+E)"
        )
        self.teach_button.setShortcut(QKeySequence("Ctrl+E"))
        self.revert_button = QPushButton("Original model")
        self.revert_button.setToolTip("Switch back from the model adapted to your voice to the loaded checkpoint")
        self.revert_button.setVisible(False)
        for w in (
            QLabel("Source:"),
            self.source_box,
            self.demo_box,
            self.open_button,
            self.file_label,
            self.device_box,
            self.refresh_devices,
            self.level,
            QLabel("Replay:"),
            self.pace_box,
            self.start_button,
            self.stop_button,
        ):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.teach_button)
        row.addWidget(self.revert_button)
        self.body.addLayout(row)
        yield

        self.spec_plot = pg.PlotWidget()
        self.spec_plot.setBackground("w")
        self.spec_plot.setLabel("bottom", "time", units="s")
        self.spec_plot.setLabel("left", "mel band")
        self.spec_plot.setMouseEnabled(x=False, y=False)
        self.spec_plot.hideButtons()
        self.spec_plot.setYRange(-9, N_MELS, padding=0)
        self.spec_plot.getAxis("left").setTicks([[(0, "0"), (20, "20"), (40, "40")]])
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.spec_plot.addItem(self.image)
        yield
        self.spec_plot.setToolTip(
            "Log-mel spectrogram as it streams in; dashed lines are block boundaries "
            "(W encoder frames); each digit is written under the block that emitted it"
        )
        self.att_plot = pg.PlotWidget()
        self.att_plot.setBackground("w")
        self.att_plot.setLabel("bottom", "encoder frame in the block")
        self.att_plot.setLabel("left", "attention")
        self.att_plot.setYRange(0, 1, padding=0.02)
        self.att_plot.setMouseEnabled(x=False, y=False)
        self.att_plot.hideButtons()
        self.att_title = QLabel(ATT_TITLE)
        self.att_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#3b6ea8")
        self.att_plot.addItem(self.att_bars)
        yield
        att_w = QWidget()
        al = QVBoxLayout(att_w)
        al.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.att_title)
        al.addWidget(self.att_plot, 1)
        shrinkable(self.spec_plot, 200)
        shrinkable(self.att_plot, 160)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.spec_plot)
        split.addWidget(att_w)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        shrinkable(split, 200)
        self.body.addWidget(split, 1)

        grid = QGridLayout()
        self.transcript_label = QLabel("—")
        self.transcript_label.setFont(bold_font(34))
        self.transcript_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.transcript_label.setToolTip("What the online transducer has emitted so far")
        self.reference_label = QLabel("")
        self.offline_label = QLabel("")
        self.offline_label.setWordWrap(True)
        self.offline_label.setToolTip(
            "The offline variant (same transducer, bidirectional encoder) can only answer after the audio has ended"
        )
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #555;")
        grid.addWidget(QLabel("Online transcript:"), 0, 0)
        grid.addWidget(self.transcript_label, 0, 1)
        grid.addWidget(self.reference_label, 1, 1)
        grid.addWidget(self.offline_label, 2, 0, 1, 2)
        grid.addWidget(self.status_label, 3, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        self.body.addLayout(grid)

        self.source_box.currentIndexChanged.connect(self._source_changed)
        self.open_button.clicked.connect(self._ask_wav)
        self.refresh_devices.clicked.connect(self._populate_devices)
        self.pace_box.currentIndexChanged.connect(lambda i: setattr(self, "pace", PACES[i][1]))
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.teach_button.clicked.connect(self.open_enrollment)
        self.revert_button.clicked.connect(self.revert_adaptation)
        self._source_changed(0)

    def _source_changed(self, i: int) -> None:
        self.source_kind = SOURCES[i]
        demo, wav, mic = (self.source_kind == s for s in SOURCES)
        self.demo_box.setVisible(demo)
        self.open_button.setVisible(wav)
        self.file_label.setVisible(wav)
        self.device_box.setVisible(mic)
        self.refresh_devices.setVisible(mic)
        self.pace_box.setEnabled(not mic)
        if mic:
            self._populate_devices()  # also shows or clears the "no microphone" message
        else:
            self.clear_error()

    def _populate_devices(self) -> None:
        """Fill the microphone list afresh (the chosen device stays chosen while it is there)."""
        current = self.device_box.currentData()
        keep = bytes(current.id()) if current is not None else None
        self.device_box.blockSignals(True)
        self.device_box.clear()
        devices, default = audio_inputs()
        pick = -1
        for d in devices:
            self.device_box.addItem(d.description(), d)
            if keep is not None and bytes(d.id()) == keep:
                pick = self.device_box.count() - 1
            elif pick < 0 and default is not None and d.id() == default.id():
                pick = self.device_box.count() - 1
        if self.device_box.count():
            self.device_box.setCurrentIndex(max(0, pick))
        self.device_box.blockSignals(False)
        self._watch_devices()
        if self.source_kind == "Microphone":
            if self.device_box.count() == 0:
                self._show_no_mic()
            else:
                self.clear_msg(self.Messages.no_microphone, self.Messages.mic_server_too_late)

    def _show_no_mic(self) -> None:
        """Why the microphone list is empty: no device or server, or a server that came too late for Qt."""
        late = panel_mic.sound_server_running()
        self.show_msg(self.Messages.mic_server_too_late if late else self.Messages.no_microphone, instead=OTHER_SOURCES)

    def _watch_devices(self) -> None:
        """Refresh the list when Qt reports that audio inputs came or went."""
        if self._media_devices is not None:
            return
        try:
            from PySide6.QtMultimedia import QMediaDevices
        except Exception:  # noqa: BLE001 - no QtMultimedia: the list stays empty and says why
            return
        self._media_devices = QMediaDevices(self)
        self._media_devices.audioInputsChanged.connect(self._populate_devices)

    def wav_start_folder(self) -> str:
        """Where "Open WAV…" opens: the folder of the last file opened, else the bundled demo utterances."""
        return input_folder(self.context.settings, WAV_DIR_KEY, "transducer")

    def _ask_wav(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a WAV file", self.wav_start_folder(), "Audio (*.wav *.flac *.ogg);;All files (*)"
        )
        if path:
            remember_folder(self.context.settings, WAV_DIR_KEY, path)
            self.set_wav(path)

    def set_wav(self, path) -> None:
        self.wav_path = Path(path)
        self.file_label.setText(self.wav_path.name)
        self.source_box.setCurrentIndex(SOURCES.index("WAV file"))

    # ------------------------------------------------------------------ model / demo
    def on_model_loaded(self, model, meta) -> None:
        self._base = None  # a newly opened checkpoint replaces any adapted model
        self.revert_button.setVisible(False)
        if self.running:  # what streams and what is shown came from the previous model
            self.stop()
        self._reset_view()
        self.transcript_label.setText("—")
        self._show_model(model, meta.name)

    def _show_model(self, model, name: str) -> None:
        off = "with" if model.offline is not None else "without"
        cfg = model.online.cfg
        self.status_label.setText(
            f"Model {name}: W = {cfg['block']} encoder frames "
            f"({cfg['block'] * model.online.frame_seconds * 1000:.0f} ms) per block, "
            f"M = {cfg['max_per_block']}, {off} the offline comparison model."
        )

    # ------------------------------------------------------------------ enrollment ("teach it my voice")
    def base_model(self):
        """The loaded checkpoint's models (not an adapted copy): what enrollment starts from."""
        return self._base[0] if self._base else self.model

    def base_meta(self):
        return self._base[1] if self._base else self.model_meta

    def open_enrollment(self):
        from .panel_enroll import EnrollDialog

        if self.model is None:
            self.show_msg(self.Messages.no_model)
            return None
        if self._enroll is None:
            self._enroll = EnrollDialog(self)
            self._enroll.adapted.connect(self.use_adapted)
        self._enroll.show()
        self._enroll.raise_()
        return self._enroll

    def use_adapted(self, model, hist) -> None:
        from .infer import ModelBundle

        if self._base is None:
            self._base = (self.model, self.model_meta)
        base = self._base[0]
        self.model = ModelBundle(model, base.offline, base.offline_meta)
        e = hist["enrollment"]
        self._show_model(
            self.model,
            f"{self._base[1].name} adapted to your voice ({e['clips']} recordings, {hist['steps_done']} steps)",
        )
        self.revert_button.setVisible(True)
        from .adapt import adapted_meta

        self.checkpoint_changed.emit(adapted_meta(self._base[1], model, hist))  # the checkpoint bar says so

    def revert_adaptation(self) -> None:
        if self._base is None:
            return
        self.model, self.model_meta = self._base
        self._base = None
        self.revert_button.setVisible(False)
        self._show_model(self.model, self.model_meta.name)
        self.checkpoint_changed.emit(self.model_meta)

    def start_default_demo(self) -> None:
        if self.demo_box.count() == 0:
            self.show_msg(self.Messages.no_demos)
            self.mark_demo_done()
            return
        self._is_default_demo = True
        self.source_box.setCurrentIndex(0)
        self.start()

    def attract_step(self) -> None:
        """Attract mode: the next demo utterance, read block by block."""
        if self.running or self.demo_box.count() == 0:
            return
        self.source_box.setCurrentIndex(0)
        self.demo_box.setCurrentIndex((self.demo_box.currentIndex() + 1) % self.demo_box.count())
        self.start()

    # ------------------------------------------------------------------ streaming
    def _reset_view(self) -> None:
        """Nothing of an earlier run stays: spectrogram, block marks, digits, attention and its title."""
        self._frames = np.zeros((0, N_MELS), np.float32)
        self._frame0 = 0
        self._t = 0.0
        for _, it in self._block_items:
            self.spec_plot.removeItem(it)
        self._block_items = []
        self.transcript = ""
        self.offline_text = ""
        self.last_summary = None
        self.transcript_label.setText("…")
        self.offline_label.setText("")
        self.reference_label.setText("")
        self.image.clear()
        self.att_bars.setOpts(x=[], height=[])
        self.att_title.setText(ATT_TITLE)
        self.overruns = 0
        self._dirty = True

    def start(self) -> None:
        if self.model is None:
            self.show_msg(self.Messages.no_model)
            return
        if self.running:
            self.stop()
        self.clear_error()
        kind = self.source_kind
        if kind == "Microphone":
            self._start_mic()
            return
        if kind == "Demo utterance":
            path = self.demo_box.currentData()
            if not path:
                self.show_msg(self.Messages.no_demo_utterance)
                return
        else:
            if self.wav_path is None:
                self._ask_wav()
                if self.wav_path is None:
                    return
            path = str(self.wav_path)
        name = Path(path).name
        ref = name.split("_", 1)[0]
        self._reset_view()
        if ref.isdigit():
            self.reference_label.setText(f"reference (from the file name): {ref}")
        self._stream_name = name
        from .infer import stream_path  # loaded already, with the model (the app's loader lives there)

        self._set_running(True, f"replaying {name}")
        self.runner.submit(
            stream_path,
            self.model,
            path,
            pace=self.pace,
            key="stream",
            name="transducer stream",
            on_partial=self._on_partial,
            on_result=self._on_done,
            on_error=self._on_stream_error,
            on_cancelled=self._on_stream_cancelled,
        )

    def _start_mic(self) -> None:
        if self.device_box.count() == 0:
            self._populate_devices()
        if self.device_box.count() == 0:
            self._show_no_mic()
            return
        dev = self.device_box.currentData()
        try:
            src, io, fmt = open_microphone(dev, self)
        except UserError as exc:
            self.show_msg(self.Messages.mic_unavailable, reason=str(exc))
            return
        self._audio_source, self._audio_io, self._mic_format = src, io, fmt
        self._q = queue.Queue(maxsize=200)
        io.readyRead.connect(self._mic_ready)
        # a zero-argument @Slot: Qt calls it without the QAudio::State argument, which PySide6 cannot convert
        # to Python (a Python callable taking it printed a TypeError on every start and stop)
        src.stateChanged.connect(self._mic_state)
        self._reset_view()
        self._stream_name = dev.description()
        from .infer import stream_queue  # loaded already, with the model

        self._set_running(True, f"listening to {dev.description()} ({fmt.sampleRate()} Hz)")
        self.runner.submit(
            stream_queue,
            self.model,
            self._q,
            fmt.sampleRate(),
            key="stream",
            name="transducer microphone",
            on_partial=self._on_partial,
            on_result=self._on_done,
            on_error=self._on_stream_error,
            on_cancelled=self._on_stream_cancelled,
        )

    def _mic_ready(self) -> None:
        if self._audio_io is None or self._q is None:
            return
        data = bytes(self._audio_io.readAll().data())
        if not data:
            return
        x = decode_pcm(data, self._mic_format)
        if x is None:
            self.show_msg(self.Messages.mic_bad_format, format=err_name(self._mic_format.sampleFormat()))
            self.stop()
            return
        try:
            self._q.put_nowait(x)
        except queue.Full:
            self.overruns += 1

    @Slot()
    def _mic_state(self) -> None:
        if self._audio_source is not None and err_name(self._audio_source.error()) not in ("NoError", "UnderrunError"):
            if err_name(self._audio_source.error()) == "IOError":
                self.overruns += 1
                return
            self.show_msg(self.Messages.mic_stopped, reason=audio_error(self._audio_source.error()))
            self.stop()

    def _stop_mic(self) -> None:
        close_microphone(self._audio_source)
        self._audio_source = self._audio_io = None
        if self._q is not None:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                self.runner.cancel("stream")
        self._q = None

    def stop(self) -> None:
        if self._audio_source is not None:
            self._stop_mic()  # the worker finishes the last block and runs the offline model
        else:
            self.runner.cancel("stream")
            self._set_running(False, f"{self._stream_name}: stopped at {self._t:.2f} s")

    def _set_running(self, on: bool, text: str = "") -> None:
        self.running = on
        self.start_button.setEnabled(not on)
        self.stop_button.setEnabled(on)
        self.source_box.setEnabled(not on)
        if text:
            self._status_extra = text
            self.status_label.setText(f"{text}…" if on else text)
        if not on:
            self.level.setValue(-60)

    # ------------------------------------------------------------------ results (GUI thread)
    def _on_partial(self, item) -> None:
        if "offline" in item:
            self._show_offline(item["offline"])
            return
        fr = item["frames"]
        if len(fr):
            self._frames = np.concatenate([self._frames, fr])
            keep = int(WINDOW_S / FRAME_S) + 50
            if len(self._frames) > keep:
                cut = len(self._frames) - keep
                self._frames = self._frames[cut:]
                self._frame0 += cut
        self._t = item.get("t", self._t)
        self.level.setValue(int(max(-60, min(0, item.get("level_db", -60)))))
        for ev in item["blocks"]:
            self._add_block(ev)
        self.status_label.setText(
            f"{getattr(self, '_status_extra', '')} · {self._t:.2f} s · streaming RTF "
            f"{item.get('rtf', 0):.3f} · overruns {self.overruns}"
        )
        self._dirty = True

    def _add_block(self, ev) -> None:
        line = pg.InfiniteLine(pos=ev["end_s"], angle=90, pen=pg.mkPen("#ffffff", width=1, style=Qt.DashLine))
        self.spec_plot.addItem(line)
        items = [line]
        if ev["digits"]:
            txt = pg.TextItem(" ".join(str(d) for d in ev["digits"]), color="#b00020", anchor=(0.5, 0.5))
            txt.setFont(bold_font(16))
            txt.setPos((ev["start_s"] + ev["end_s"]) / 2, -4.5)
            self.spec_plot.addItem(txt)
            items.append(txt)
            att = np.asarray(ev["attention"][-1])
            self.att_bars.setOpts(x=np.arange(len(att)), height=att, width=0.8)
            self.att_plot.setXRange(-0.5, len(att) - 0.5, padding=0)
            self.att_title.setText(
                f"Attention of digit {ev['digits'][-1]} over block {ev['block']} (emitted at {ev['time_s']:.2f} s)"
            )
        self._block_items += [(ev["end_s"], it) for it in items]
        self.transcript = ev["transcript"]
        self.transcript_label.setText(" ".join(self.transcript) or "…")
        # forget items that scrolled out
        old = [p for p in self._block_items if p[0] < self._t - WINDOW_S - 1]
        for p in old:
            self.spec_plot.removeItem(p[1])
        self._block_items = [p for p in self._block_items if p[0] >= self._t - WINDOW_S - 1]

    def _show_offline(self, off) -> None:
        digits = "".join(str(d) for d in off["digits"]) or "(nothing)"
        self.offline_text = digits
        self.offline_label.setText(
            f"Offline variant (bidirectional encoder: needs the whole utterance): <b>{digits}</b> — it can "
            f"only answer after the audio ends, at {off['audio_s']:.2f} s (+{off['compute_s'] * 1000:.0f} ms "
            f"compute); the online transducer emitted each digit within a block of hearing it."
        )

    def _on_done(self, summary) -> None:
        self.last_summary = summary
        self._set_running(False)
        if summary:
            self.transcript = "".join(str(d) for d in summary["digits"])
            self.transcript_label.setText(" ".join(self.transcript) or "(no digits heard)")
            self.report_timing(summary["rtf"] * summary["audio_s"] * 1000, "transducer decode")
        self._dirty = True
        self._refresh()
        if self._is_default_demo:
            self._is_default_demo = False
            self.mark_demo_done()

    def _on_stream_error(self, exc, tb) -> None:
        self._stop_mic()
        self._reset_view()  # nothing half-drawn, nothing of an earlier run
        self.transcript_label.setText("—")
        self._set_running(False, f"{self._stream_name}: failed (see the message above)")
        self._refresh()
        self.show_exception(exc, tb)
        if self._is_default_demo:
            self._is_default_demo = False
            self.mark_demo_done()

    def _on_stream_cancelled(self) -> None:
        if not self.runner.latest_cancelled("stream"):
            return  # replaced by a newer run, which reports for itself
        self._stop_mic()  # nothing more comes from this run
        if self.running:  # (stop() already said so when it was the Stop button)
            self._set_running(False, f"{self._stream_name}: stopped at {self._t:.2f} s")
        if self._is_default_demo:
            self._is_default_demo = False
            self.mark_demo_done()

    def _refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if len(self._frames):
            x0 = self._frame0 * FRAME_S
            self.image.setImage(self._frames, autoLevels=False, levels=(-2.5, 3.0))
            self.image.setRect(QRectF(x0, 0, len(self._frames) * FRAME_S, N_MELS))
        right = max(WINDOW_S, self._t)
        self.spec_plot.setXRange(right - WINDOW_S, right, padding=0)

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._refresh_timer.stop()
        self._stop_mic()
        if self._enroll is not None:
            self._enroll.close()  # stops its recording and cancels an adaptation
        return super().shutdown(timeout)
