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
    idx = next((i for i in range(panel.device_box.count())
                if bytes(panel.device_box.itemData(i).id()) == b"vmic"), -1)
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
    print(json.dumps({"transcript": panel.transcript, "offline": panel.offline_text, "overruns": panel.overruns,
                      "devices": names, "error": panel.banner.message()}))
    w.shutdown(10.0)
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
