"""Issue 27: declared panel messages (the banner knows which kind it shows) and one way to the device (the panel's
runner fills a job's ``device`` in the worker)."""

from __future__ import annotations

import threading

import pytest

from explorer.core.errors import UserError
from explorer.core.settings import Settings

from . import dummy_paper

PANELS = (
    "explorer.papers.srnn.panel:SRNNPanel",
    "explorer.papers.l2l.panel:L2LPanel",
    "explorer.papers.bptt.panel:BPTTPanel",
    "explorer.papers.transducer.panel:TransducerPanel",
)


def _panel_class(ref):
    import importlib

    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@pytest.fixture
def bare_panel(qtbot, tmp_path):
    """A PaperPanel of the dummy paper, not in a window (its banner and runner are what these tests use)."""
    from explorer.ui.context import AppContext
    from explorer.ui.panel_base import PaperPanel

    panel = PaperPanel(dummy_paper.SPEC, AppContext(Settings(tmp_path / "s.json"), device_preference="cpu"))
    qtbot.addWidget(panel)
    panel.show()
    yield panel
    panel.shutdown(10.0)


# ------------------------------------------------------------------------------------------- the tables
@pytest.mark.parametrize("ref", PANELS)
def test_each_panel_declares_its_messages_in_one_table_that_keeps_the_generic_ones(ref):
    from explorer.ui.messages import Msg
    from explorer.ui.panel_base import PaperPanel

    cls = _panel_class(ref)
    table = cls.Messages
    generic = PaperPanel.Messages.kinds()
    assert issubclass(table, PaperPanel.Messages)
    kinds = table.kinds()
    assert set(generic) <= set(kinds)
    for name, kind in generic.items():
        assert kinds[name] is kind  # never redeclared: one 'unexpected', one 'wrong_tab', ...
    own = {n: k for n, k in kinds.items() if n not in generic}
    if ref.endswith(("SRNNPanel", "BPTTPanel", "TransducerPanel")):
        assert own, f"{ref} shows its own messages: they are declared"
    for name, kind in kinds.items():
        assert isinstance(kind, Msg) and kind.name == name
        assert kind.text() == kind.text().strip()  # a field left out reads as nothing, never raises
    # the panel's module shows no undeclared words: every banner message goes through show_msg
    import inspect

    source = inspect.getsource(inspect.getmodule(cls))
    assert "show_error(" not in source and ".banner.message()" not in source


def test_msg_fills_its_fields_and_names_itself():
    from explorer.ui.messages import Messages, Msg

    class Mine(Messages):
        bad_audio = Msg("Could not read {file}: {reason}.")

    assert Mine.bad_audio.text(file="a.wav", reason="it is empty") == "Could not read a.wav: it is empty."
    assert repr(Mine.bad_audio) == "<Msg test_msg_fills_its_fields_and_names_itself.<locals>.Mine.bad_audio>"
    assert (
        Mine.unexpected is Messages.unexpected and "bad_audio" in Mine.kinds() and "bad_audio" not in Messages.kinds()
    )


# ------------------------------------------------------------------------------------------- the banner
def test_the_banner_remembers_the_kind_and_the_fields_it_shows(bare_panel):
    M = bare_panel.Messages
    banner = bare_panel.banner
    assert banner.kind is None and not banner.isVisible()
    text = bare_panel.show_msg(M.bundled_missing, file="x.safetensors", folder="/models", paper="dummy")
    assert banner.kind is M.bundled_missing and banner.fields["file"] == "x.safetensors"
    assert banner.message() == text and text.count("x.safetensors") == 1
    bare_panel.clear_msg(M.unexpected)  # another kind is shown: it stays
    assert banner.kind is M.bundled_missing and banner.isVisible()
    bare_panel.clear_msg(M.bundled_missing)
    assert banner.kind is None and not banner.isVisible() and banner.fields == {}
    bare_panel.show_error("words of a panel not yet ported")
    assert banner.kind is M.undeclared and banner.message() == "words of a panel not yet ported"


@pytest.mark.parametrize(
    "exc,kind,words",
    [
        (UserError("x.wav: the file is empty"), "user_error", "x.wav: the file is empty"),
        (MemoryError(), "out_of_memory", "Something went wrong: the computer ran out of memory"),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "out_of_memory",
            "Something went wrong: the graphics card ran out of memory",
        ),
        (ValueError("kaboom"), "unexpected", "Something went wrong: kaboom"),
        (KeyError(), "unexpected", "Something went wrong: an unexpected error (KeyError)"),
    ],
)
def test_a_workers_failure_gets_its_generic_kind_and_plain_words(bare_panel, exc, kind, words):
    bare_panel.show_exception(exc, "Traceback ...")
    banner = bare_panel.banner
    assert banner.kind is getattr(bare_panel.Messages, kind)
    assert banner.message() == words
    assert banner.details() == "Traceback ..." and banner.details_button.isVisible()


def test_nothing_is_shown_after_shutdown(bare_panel):
    bare_panel.shutdown(1.0)
    bare_panel.show_msg(bare_panel.Messages.unexpected, reason="late")
    assert bare_panel.banner.kind is None and not bare_panel.banner.isVisible()


# ------------------------------------------------------------------------------------------- the device
def test_wants_device_only_when_a_device_parameter_is_left_unset():
    from explorer.ui.panel_base import wants_device

    def job(a, device="cpu", token=None):
        return a

    def positional(a, device, cfg):
        return a

    def other(a, device_fn=None, **kwargs):
        return a

    assert wants_device(job, (1,), {})
    assert not wants_device(job, (1,), {"device": "cuda"})
    assert not wants_device(job, (1, "cuda"), {})
    assert wants_device(positional, (1,), {"cfg": {}})
    assert not wants_device(positional, (1, "cpu", {}), {})
    assert not wants_device(other, (1,), {})  # only a parameter named device (not **kwargs) gets one
    assert not wants_device(job, (1, 2, 3, 4), {})  # a wrong call fails in the worker with its own error


def test_the_runner_resolves_the_device_in_the_worker_for_every_job_that_asks(qtbot):
    from explorer.ui.panel_base import PanelRunner

    asked = []

    def device_fn():
        asked.append(threading.current_thread())
        return "dev0"

    runner = PanelRunner(None, None, device_fn)
    got = {}

    def plain(x, device="cpu", token=None, progress=None):
        assert token is not None and progress is not None  # the runner still sees its parameters
        return (x, device)

    def gen(x, device="cpu", token=None):
        yield "partial"
        return (x, device)

    def given(x, device="cpu"):
        return (x, device)

    def none(x):
        return x

    try:
        for name, fn, kw in (
            ("plain", plain, {}),
            ("gen", gen, {}),
            ("given", given, {"device": "mine"}),
            ("none", none, {}),
        ):
            with qtbot.waitSignal(runner.task_timed, timeout=10000):
                runner.submit(fn, 1, name=name, on_result=lambda r, n=name: got.__setitem__(n, r), **kw)
    finally:
        runner.shutdown(5.0)
    assert got == {"plain": (1, "dev0"), "gen": (1, "dev0"), "given": (1, "mine"), "none": 1}
    assert len(asked) == 2 and all(t is not threading.main_thread() for t in asked)  # never the GUI thread


def test_a_panels_checkpoint_load_gets_the_apps_device(bare_panel, qtbot, tmp_path, monkeypatch):
    """The loader is called with the device the runner resolved (the app's), in the worker."""
    seen = []
    real = dummy_paper.load

    def load(path, device):
        seen.append((str(device), threading.current_thread() is threading.main_thread()))
        return real(path, device)

    monkeypatch.setattr(dummy_paper, "load", load)
    dummy_paper.save(tmp_path / "d.safetensors")
    with qtbot.waitSignal(bare_panel.checkpoint_changed, timeout=30000):
        bare_panel.open_checkpoint(tmp_path / "d.safetensors")
    assert seen == [("cpu", False)]


def test_a_bad_checkpoint_given_at_start_keeps_its_message_over_the_bundled_model(qtbot, tmp_path, monkeypatch):
    """--checkpoint with a broken file: the bundled model is loaded instead, and the banner still says (same kind,
    same details) why the given file was not used."""
    from explorer.ui import main_window as mw
    from explorer.ui.context import AppContext
    from explorer.ui.panel_base import PaperPanel

    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint at all")
    monkeypatch.setattr(mw, "all_specs", lambda: [dummy_paper.SPEC])
    w = mw.MainWindow(
        AppContext(Settings(), "cpu"), initial_tab="dummy", initial_checkpoint=str(tmp_path / "broken.safetensors")
    )
    qtbot.addWidget(w)
    w.show()
    try:
        page = w.pages["dummy"]
        qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
        banner = page.panel.banner
        assert page.panel.model_meta.name == "dummy.safetensors"
        assert banner.isVisible() and banner.kind is PaperPanel.Messages.checkpoint_unreadable
        assert banner.fields["file"] == "broken.safetensors" and banner.details()
        assert banner.message().startswith("Could not open broken.safetensors: ")
    finally:
        w.shutdown()
