"""The main window: one lazily built tab per registered paper, menus, checkpoint bar, status bar."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..core.registry import PaperSpec, all_specs, load_attr
from .context import AppContext
from .dialogs import CHECKPOINT_KEY, checkpoint_folder, remember_folder, start_folder
from .widgets.banner import ErrorBanner
from .widgets.checkpoint_bar import CheckpointBar
from .widgets.fit_scroll import FitScrollArea
from .workers import TaskRunner

log = logging.getLogger(__name__)
CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pt *.pth);;All files (*)"


class TabPage(QWidget):
    """Header (title, authors, summary, link), checkpoint bar, and the paper's panel (built on first show)."""

    built = Signal(object)

    def __init__(self, spec: PaperSpec, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.context = context
        self.panel = None
        self.build_error: str | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        title = QLabel(f"<span style='font-size:15pt; font-weight:600'>{spec.title}</span>")
        title.setWordWrap(True)
        authors = QLabel(f"{spec.authors} · NIPS {spec.year} · <a href='{spec.link}'>paper</a>")
        authors.setOpenExternalLinks(True)
        authors.setToolTip(spec.link)
        summary = QLabel(spec.summary)
        summary.setWordWrap(True)
        summary.setStyleSheet("color: #444;")
        lay.addWidget(title)
        lay.addWidget(authors)
        lay.addWidget(summary)
        self.checkpoint_bar = CheckpointBar(self)
        self.checkpoint_bar.setVisible(bool(spec.loader))
        lay.addWidget(self.checkpoint_bar)
        self.banner = ErrorBanner(self)  # for build errors of the panel itself
        lay.addWidget(self.banner)
        self.placeholder = QWidget()
        pl = QVBoxLayout(self.placeholder)
        msg = QLabel(f"Loading {spec.short_title}…")
        msg.setAlignment(Qt.AlignCenter)
        busy = QProgressBar()
        busy.setRange(0, 0)
        busy.setMaximumWidth(240)
        pl.addStretch(1)
        pl.addWidget(msg, 0, Qt.AlignCenter)
        pl.addWidget(busy, 0, Qt.AlignCenter)
        pl.addStretch(1)
        lay.addWidget(self.placeholder, 1)
        self._layout = lay
        self._building = False
        self._closed = False
        self._checkpoint: str | None = None
        self._pending = None  # the panel while its pieces are built
        self._build_runner = TaskRunner(self)
        self.checkpoint_bar.open_requested.connect(self.ask_open_checkpoint)
        self.checkpoint_bar.reset_requested.connect(self.reset_checkpoint)

    def ensure_built(self, checkpoint: str | None = None) -> None:
        """Build the panel without holding the GUI thread: its module is imported in a worker, then the panel is
        made and its ``build_steps()`` run one per event-loop turn while the placeholder shows; then the panel
        replaces the placeholder and its default demo starts. ``self.panel`` is set once it is all built."""
        if self.panel is not None or self.build_error is not None:
            return
        if checkpoint:
            self._checkpoint = checkpoint
        if self._building:
            return
        self._building = True
        self._t0 = time.perf_counter()
        self._build_runner.submit(
            _import_panel,
            self.spec.panel,
            key="import",
            name=f"import the {self.spec.id} panel",
            on_result=self._construct,
            on_error=self._build_failed,
        )

    def _construct(self, cls) -> None:
        if self._closed:
            return
        try:
            panel = cls(self.spec, self.context, self)
            panel.hide()  # shown when all its pieces are built
            self._pending = panel
            steps = iter(panel.build_steps())
        except Exception as exc:  # noqa: BLE001 - a broken panel must not take the app down
            self._build_failed(exc, traceback.format_exc())
            return
        QTimer.singleShot(0, lambda: self._build_step(panel, steps))

    def _build_step(self, panel, steps) -> None:
        """One piece of the panel per event-loop turn (the placeholder's busy bar moves in between)."""
        if self._closed:
            return
        try:
            next(steps)
        except StopIteration:
            self._install(panel)
            return
        except Exception as exc:  # noqa: BLE001
            self._build_failed(exc, traceback.format_exc())
            return
        QTimer.singleShot(0, lambda: self._build_step(panel, steps))

    def _build_failed(self, exc: BaseException, tb: str) -> None:
        self._building = False
        self.build_error = f"{type(exc).__name__}: {exc}"
        log.error("building the %s panel failed:\n%s", self.spec.id, tb)
        self.banner.show_message(f"The {self.spec.short_title} tab could not be built: {self.build_error}", tb)
        self.placeholder.hide()
        if self._pending is not None:
            self._pending.shutdown(1.0)
            self._pending.deleteLater()
            self._pending = None

    def _install(self, panel) -> None:
        log.info("built %s panel in %.0f ms", self.spec.id, (time.perf_counter() - self._t0) * 1000)
        self._pending = None
        self._building = False
        self.panel = panel
        # A window smaller than the panel's least size scrolls it instead of squeezing its plots and pictures
        # below their minimum sizes (where they would overlap); at ordinary sizes no scroll bar shows.
        self.scroll = FitScrollArea()
        self.scroll.setWidget(panel)
        panel.show()
        self._layout.replaceWidget(self.placeholder, self.scroll)
        self.placeholder.hide()
        self.placeholder.deleteLater()
        panel.checkpoint_changed.connect(self.checkpoint_bar.set_meta)
        if panel.uses_checkpoint:
            self.checkpoint_bar.set_missing("loading…")
        self.built.emit(self)
        checkpoint, self._checkpoint = self._checkpoint, None
        QTimer.singleShot(0, lambda: panel.activate(checkpoint))

    def ask_open_checkpoint(self) -> None:
        if self.panel is None or not self.spec.loader:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, f"Open a {self.spec.short_title} checkpoint", self.checkpoint_start_folder(), CHECKPOINT_FILTER
        )
        if path:
            remember_folder(self.context.settings, CHECKPOINT_KEY, path)
            self.open_checkpoint(path)

    def checkpoint_start_folder(self) -> str:
        """Where "Open checkpoint…" opens: the folder of the last checkpoint opened, else the bundled models."""
        return checkpoint_folder(self.context.settings)

    def open_checkpoint(self, path: str) -> None:
        """The same path the file dialog uses."""
        if self.panel is not None:
            self.panel.open_checkpoint(path)

    def reset_checkpoint(self) -> None:
        if self.panel is not None:
            self.panel.load_bundled()

    def shutdown(self, timeout: float) -> bool:
        self._closed = True
        ok = self._build_runner.shutdown(timeout)
        panel = self.panel or self._pending
        if panel is not None:
            ok = panel.shutdown(timeout) and ok
        return ok


class MainWindow(QMainWindow):
    def __init__(
        self, context: AppContext, initial_tab: str | None = None, initial_checkpoint: str | None = None
    ) -> None:
        super().__init__()
        self.context = context
        self.setWindowTitle(f"NIPS Explorer {__version__}")
        self.setMinimumSize(1024, 680)
        self._closing = False
        self._allow_close = not context.kiosk
        self.specs: list[PaperSpec] = all_specs()
        self.pages: dict[str, TabPage] = {}
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for i, spec in enumerate(self.specs):
            page = TabPage(spec, context)
            page.built.connect(self._on_page_built)
            self.pages[spec.id] = page
            self.tabs.addTab(page, spec.short_title)
            self.tabs.setTabToolTip(i, f"{spec.title} ({spec.authors}, {spec.year}) — Ctrl+{i + 1}")
        self.setCentralWidget(self.tabs)
        self._initial_checkpoint = initial_checkpoint
        self._build_menus()
        self._build_status()
        self.runner = TaskRunner(self, on_error=self._on_shell_error)
        restored = self._restore_settings()
        if initial_tab and initial_tab in self.pages:
            self.tabs.setCurrentWidget(self.pages[initial_tab])
        elif not restored:
            self.tabs.setCurrentIndex(0)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        from .attract import AttractMode

        self.attract = AttractMode(self, context.attract_s)
        QTimer.singleShot(0, self._after_first_paint)

    # ------------------------------------------------------------ building
    def _build_menus(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        self.open_action = QAction("&Open checkpoint…", self, shortcut=QKeySequence.Open)
        self.open_action.triggered.connect(self._open_checkpoint)
        file_menu.addAction(self.open_action)
        shot = QAction("Save &screenshot…", self, shortcut=QKeySequence("Ctrl+Shift+S"))
        shot.triggered.connect(self._save_screenshot)
        file_menu.addAction(shot)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.Quit)
        quit_action.triggered.connect(self.request_quit)
        file_menu.addAction(quit_action)
        view = mb.addMenu("&View")
        self.fullscreen_action = QAction("&Full screen", self, shortcut=QKeySequence("F11"), checkable=True)
        self.fullscreen_action.triggered.connect(self._toggle_fullscreen)
        view.addAction(self.fullscreen_action)
        view.addSeparator()
        for i, spec in enumerate(self.specs):
            act = QAction(spec.short_title, self, shortcut=QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, pid=spec.id: self.show_tab(pid))
            view.addAction(act)
        help_menu = mb.addMenu("&Help")
        about = QAction("&About NIPS Explorer", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)
        if self.context.kiosk:
            QShortcut(QKeySequence("Ctrl+Alt+Q"), self, activated=self._kiosk_quit)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.device_label = QLabel("Device: loading torch…")
        self.device_label.setToolTip("Where the models run (--device auto|cpu|cuda|mps)")
        self.timing_label = QLabel("")
        self.timing_label.setToolTip("Time of the last background computation")
        sb.addPermanentWidget(self.timing_label)
        sb.addPermanentWidget(self.device_label)

    def _after_first_paint(self) -> None:
        # torch loads in the background while the first tab is built
        current = self.current_page()
        pages = sorted(self.pages.values(), key=lambda p: p is not current)  # the tab on screen first
        modules = [p.spec.panel.partition(":")[0] for p in pages]
        modules += [p.spec.loader.partition(":")[0] for p in pages if p.spec.loader]  # model code (GUI code
        # imports from it too: better loaded here than on the GUI thread or in a demo's worker)
        self.runner.submit(
            _warm_up,
            self.context,
            modules,
            name="load torch",
            on_result=self._on_device_ready,
            on_progress=lambda _f, text: self._on_device_ready(text) if text else None,
        )
        QTimer.singleShot(30, self._build_current)

    def _build_current(self) -> None:
        page = self.tabs.currentWidget()
        if isinstance(page, TabPage):
            path, self._initial_checkpoint = self._initial_checkpoint, None
            page.ensure_built(checkpoint=path)

    def _on_tab_changed(self, _index: int) -> None:
        page = self.tabs.currentWidget()
        if isinstance(page, TabPage):
            if not self.context.kiosk:
                self.context.settings.set("last_tab", page.spec.id)
            QTimer.singleShot(0, page.ensure_built)

    def _on_page_built(self, page: TabPage) -> None:
        page.panel.timing.connect(self._on_timing)

    def _on_device_ready(self, text: str) -> None:
        self.device_label.setText(f"Device: {text}")
        if self.context.device_error:
            self.statusBar().showMessage(self.context.device_error, 10000)

    def _on_timing(self, what: str, ms: float) -> None:
        self.timing_label.setText(f"last {what}: {ms:.0f} ms")

    def _on_shell_error(self, exc: BaseException, tb: str) -> None:
        self.device_label.setText(f"Device: unavailable ({exc})")

    # -------------------------------------------------------------- actions
    def show_tab(self, paper_id: str) -> TabPage:
        page = self.pages[paper_id]
        self.tabs.setCurrentWidget(page)
        path = None
        if page.panel is None and self._initial_checkpoint:
            path, self._initial_checkpoint = self._initial_checkpoint, None
        page.ensure_built(checkpoint=path)
        return page

    def current_page(self) -> TabPage | None:
        w = self.tabs.currentWidget()
        return w if isinstance(w, TabPage) else None

    def _open_checkpoint(self) -> None:
        page = self.current_page()
        if page is None or not page.spec.loader:
            self.statusBar().showMessage("This tab does not use a checkpoint.", 4000)
            return
        page.ask_open_checkpoint()

    def _save_screenshot(self) -> None:
        from ..core.errors import UserError
        from .screenshot import grab_window, save_png

        start = start_folder(self.context.settings, "last_screenshot_dir", _pictures_folder())
        page = self.current_page()
        name = f"nips-explorer-{page.spec.id if page else 'window'}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(Path(start) / name), "PNG (*.png)")
        if path:
            remember_folder(self.context.settings, "last_screenshot_dir", path)
            try:
                save_png(grab_window(self), path)
                self.statusBar().showMessage(f"Saved {path}", 5000)
            except UserError as exc:
                self.statusBar().showMessage(str(exc), 8000)

    def _toggle_fullscreen(self, checked: bool) -> None:
        self.showFullScreen() if checked else self.showNormal()

    def _about(self) -> None:
        import PySide6

        torch_v = sys.modules["torch"].__version__ if "torch" in sys.modules else "not loaded yet"
        try:
            from vtkmodules.vtkCommonCore import vtkVersion

            vtk_v = vtkVersion.GetVTKVersion()
        except Exception:  # noqa: BLE001
            vtk_v = "not available"
        from ..core.logsetup import log_file

        QMessageBox.about(
            self,
            "About NIPS Explorer",
            f"<b>NIPS Explorer {__version__}</b><br>Six NIPS 2016 papers you can see and touch.<br><br>"
            f"PyTorch {torch_v}<br>Qt {PySide6.QtCore.qVersion()} (PySide6 {PySide6.__version__})<br>"
            f"VTK {vtk_v}<br>{self.device_label.text()}<br>Log: {log_file()}",
        )

    def _kiosk_quit(self) -> None:
        self._allow_close = True
        self.close()

    def request_quit(self) -> None:
        if self.context.kiosk and not self._allow_close:
            self.statusBar().showMessage("Kiosk mode: press Ctrl+Alt+Q to quit.", 4000)
            return
        self.close()

    # -------------------------------------------------------------- settings
    def _restore_settings(self) -> bool:
        s = self.context.settings
        geo = s.get("geometry")
        self.geometry_restored = False
        if geo and not self.context.kiosk:
            try:
                self.geometry_restored = bool(self.restoreGeometry(QByteArray.fromBase64(geo.encode("ascii"))))
            except Exception:  # noqa: BLE001
                pass
        last = s.get("last_tab")
        if last in self.pages:
            self.tabs.setCurrentWidget(self.pages[last])
            return True
        return False

    # ---------------------------------------------------------------- close
    def closeEvent(self, event) -> None:  # noqa: N802
        if self.context.kiosk and not self._allow_close:
            event.ignore()
            self.statusBar().showMessage("Kiosk mode: press Ctrl+Alt+Q to quit.", 4000)
            return
        self.shutdown()
        event.accept()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel all work and wait (bounded). Idempotent."""
        if self._closing:
            return True
        self._closing = True
        self.attract.shutdown()
        if not self.context.kiosk:
            self.context.settings.set("geometry", bytes(self.saveGeometry().toBase64()).decode("ascii"))
        ok = self.runner.shutdown(timeout)
        for page in self.pages.values():
            ok = page.shutdown(timeout) and ok
        if "explorer.ui.widgets.vtk_view" in sys.modules:  # the 3D views' render thread ends, windows finalized
            ok = sys.modules["explorer.ui.widgets.vtk_view"].shutdown_render_thread(timeout) and ok
        return ok


def _import_panel(ref: str):
    """In a worker: the panel class (its module imported without the GIL-holding waits and full garbage
    collections that would stall the GUI thread: see core/warmup.py; at once when the warm-up imported it)."""
    from ..core.warmup import native_lock, quiet_gc

    if ref.partition(":")[0] in sys.modules:
        return load_attr(ref)
    with quiet_gc(), native_lock:
        return load_attr(ref)


def _pictures_folder() -> Path | None:
    """The user's pictures folder, where a screenshot goes the first time (None: the home folder)."""
    from PySide6.QtCore import QStandardPaths

    d = QStandardPaths.writableLocation(QStandardPaths.PicturesLocation)
    return Path(d) if d else None


VTK_MODULES = (
    "vtkmodules.vtkCommonCore",
    "vtkmodules.vtkCommonDataModel",
    "vtkmodules.vtkCommonExecutionModel",
    "vtkmodules.vtkFiltersCore",
    "vtkmodules.vtkFiltersSources",
    "vtkmodules.vtkRenderingCore",
    "vtkmodules.vtkRenderingOpenGL2",
    "vtkmodules.vtkRenderingFreeType",
    "vtkmodules.vtkRenderingUI",
    "vtkmodules.vtkInteractionStyle",
)
VTK_PYTHON = ("vtkmodules.util.numpy_support",)
# what the tabs' workers import on first use (their demos: the compression tab's SSIM, the shapes3d ground-truth
# smoothing, the transducer's resampling and noise, pictures, checkpoint files)
LAZY_LIBRARIES = ("safetensors.torch", "scipy.ndimage", "scipy.signal", "PIL.Image")


def _warm_up(context: AppContext, panel_modules=(), progress=None) -> str:
    """In a worker at start: torch (via the device), then the plotting and 3D libraries and every tab's panel
    module, so no tab's first build imports anything on the GUI thread (a module being imported here when a tab
    wants it makes the tab's own import job wait, not the GUI thread). Native libraries are loaded first without
    holding the GIL, and the garbage collector waits meanwhile, then freezes what was loaded (core/warmup.py): the
    GUI thread keeps painting. The modules the first checkpoint load and the tabs' demos import by themselves
    (torch._dynamo, scipy...) are imported here too, so that no worker imports much later."""
    from ..core.checkpoints import loader_imports
    from ..core.devices import describe
    from ..core.warmup import (
        extension_libraries,
        import_quietly,
        opengl_libraries,
        preload_libraries,
        quiet_gc,
        torch_libraries,
    )

    with quiet_gc():
        preload_libraries(torch_libraries())
        text = describe(context.device())
        if progress is not None:  # the status bar names the device now, not after the rest of the warm-up
            progress(None, text)
        import_quietly(loader_imports())  # the first checkpoint load would import these
        import_quietly(["pyqtgraph"])
        preload_libraries(extension_libraries(VTK_MODULES))
        import_quietly(VTK_MODULES + VTK_PYTHON)
        preload_libraries(opengl_libraries())  # the first 3D view's OpenGL context loads them otherwise
        from .widgets.vtk_view import warm_offscreen_rendering

        warm_offscreen_rendering()  # in the 3D render thread: software OpenGL compiles its shaders here
        import_quietly(panel_modules)
        import_quietly(LAZY_LIBRARIES)
    return text
