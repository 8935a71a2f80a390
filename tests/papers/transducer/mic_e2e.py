"""Run by test_panel.py in a fresh process (QtMultimedia must see the PulseAudio server from its first use):
open the app's Neural Transducer tab, record from the virtual microphone 'vmic', play a WAV into it with paplay,
stop, print the panel's transcript as JSON."""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(wav: str) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from explorer.core.settings import Settings
    from explorer.ui.context import AppContext
    from explorer.ui.main_window import MainWindow

    w = MainWindow(AppContext(Settings(), device_preference="cpu"), initial_tab="transducer")
    w.show()
    page = w.show_tab("transducer")

    def spin(cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            app.processEvents()
            time.sleep(0.01)
        return cond()

    assert spin(lambda: page.panel is not None and page.panel.model is not None, 120), "panel/model not ready"
    panel = page.panel
    panel._populate_devices()
    names = [panel.device_box.itemText(i) for i in range(panel.device_box.count())]
    idx = next((i for i in range(panel.device_box.count()) if bytes(panel.device_box.itemData(i).id()) == b"vmic"), -1)
    if idx < 0:
        print(json.dumps({"error": "no vmic device", "devices": names}))
        return 3
    panel.source_box.setCurrentIndex(2)
    panel.device_box.setCurrentIndex(idx)
    panel.start()
    assert panel.running, panel.banner.message()
    spin(lambda: False, 1.0)
    play = subprocess.Popen(["paplay", "-d", "vmic_sink", wav])
    spin(lambda: play.poll() is not None, 30)
    spin(lambda: False, 1.0)
    panel.stop()
    spin(lambda: not panel.running, 30)
    spin(lambda: False, 0.3)
    enrolled = _enroll_one_digit(panel, spin)
    print(
        json.dumps(
            {
                "transcript": panel.transcript,
                "offline": panel.offline_text,
                "overruns": panel.overruns,
                "devices": names,
                "error": panel.banner.message(),
                **enrolled,
            }
        )
    )
    w.shutdown(10.0)
    w.close()
    return 0


def _enroll_one_digit(panel, spin) -> dict:
    """'Teach it my voice' records one take from the same virtual microphone: a tone 'word' between quiet."""
    import tempfile

    import numpy as np
    import soundfile as sf

    from tests.papers.transducer.helpers import SR, tone_digit

    rng = np.random.default_rng(0)
    word = np.concatenate([np.zeros(SR // 5, np.float32), tone_digit(0, rng, dur=0.4), np.zeros(SR // 5, np.float32)])
    f = tempfile.NamedTemporaryFile(suffix=".wav", delete=False).name
    sf.write(f, word, SR, subtype="PCM_16")
    dlg = panel.open_enrollment()
    dlg.record()
    if dlg._src is None:
        return {"enrolled": False, "enroll_status": dlg.status.text()}
    spin(lambda: False, 0.3)
    play = subprocess.Popen(["paplay", "-d", "vmic_sink", f])
    spin(lambda: play.poll() is not None and dlg._src is None, 10)
    os.unlink(f)
    got = dlg.recordings[0][-1] if dlg.recordings[0] else None
    return {
        "enrolled": got is not None,
        "enroll_s": 0 if got is None else len(got) / SR,
        "enroll_status": dlg.status.text(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
