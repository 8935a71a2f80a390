"""A tiny paper used to test the shell's generic machinery (checkpoint bar, banner, workers)."""

from __future__ import annotations

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="dummy",
    title="A dummy paper for tests",
    short_title="Dummy",
    authors="Nobody",
    year=2016,
    link="https://example.org",
    summary="Used by the shell tests only.",
    panel="tests.ui.dummy_paper:DummyPanel",
    cli=None,
    default_checkpoint="dummy.safetensors",
    loader="tests.ui.dummy_paper:load",
)


def build(cfg):
    from torch import nn

    return nn.Linear(cfg["n_in"], cfg["n_out"])


LOAD_GATE = None  # a threading.Event the loader waits for (tests of loads that overlap)
BUILD_TURNS: list = []  # what each build step of the last DummyPanel saw (tests of the staged build)
CLASS_THREAD = None  # the thread that last made the DummyPanel class (its "module import")


def load(path, device):
    from explorer.core.checkpoints import load_model

    if LOAD_GATE is not None:
        LOAD_GATE.wait(10)
    return load_model(path, "dummy", build, device, default_config={"n_in": 3, "n_out": 2})


def save(path, paper="dummy", n_in=3, seed=0):
    import torch

    from explorer.core.checkpoints import save_checkpoint

    torch.manual_seed(seed)
    m = build({"n_in": n_in, "n_out": 2})
    save_checkpoint(
        path,
        m.state_dict(),
        paper=paper,
        model_config={"n_in": n_in, "n_out": 2},
        metrics={"headline": "score", "score": 1.0},
        data={"name": "none"},
    )
    return m


def _demo(token=None, progress=None):
    import time

    for i in range(5):
        progress(i / 5, f"step {i}")
        time.sleep(0.01)
    return 42


def _make_panel_class():
    import threading

    from PySide6.QtWidgets import QLabel

    from explorer.ui.panel_base import PaperPanel

    global CLASS_THREAD
    CLASS_THREAD = threading.current_thread()

    class DummyPanel(PaperPanel):
        def __init__(self, spec, context, parent=None):
            super().__init__(spec, context, parent)
            self.label = QLabel("no model")
            self.body.addWidget(self.label)
            self.demo_result = None
            self.turn = 0  # a test may count event-loop turns in here

        def build_steps(self):
            BUILD_TURNS.clear()
            for i in range(3):
                BUILD_TURNS.append((self.turn, self.isVisible()))
                self.body.addWidget(QLabel(f"piece {i}"))
                yield

        def on_model_loaded(self, model, meta):
            self.label.setText(f"model {meta.name}")

        def start_default_demo(self):
            def done(r):
                self.demo_result = r
                self.mark_demo_done()

            self.runner.submit(_demo, key="demo", on_result=done)

    return DummyPanel


def __getattr__(name):
    if name == "DummyPanel":
        return _make_panel_class()
    raise AttributeError(name)
