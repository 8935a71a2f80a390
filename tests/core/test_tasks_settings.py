import pytest

from explorer.core.errors import Cancelled
from explorer.core.settings import Settings
from explorer.core.tasks import CancelToken


def test_cancel_token():
    t = CancelToken()
    t.check()
    t.cancel()
    assert t.cancelled
    with pytest.raises(Cancelled):
        t.check()


def test_settings_round_trip(tmp_path):
    s = Settings(tmp_path / "s.json")
    s.set("last_tab", "bptt")
    assert Settings(tmp_path / "s.json").get("last_tab") == "bptt"
    s.reset()
    assert Settings(tmp_path / "s.json").get("last_tab") is None


def test_settings_not_persisted_in_kiosk(tmp_path):
    s = Settings(tmp_path / "s.json", persist=False)
    s.set("a", 1)
    assert s.get("a") == 1 and not (tmp_path / "s.json").exists()


def test_corrupt_settings_start_fresh(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    assert Settings(tmp_path / "s.json").get("x", 5) == 5


def test_device_choice(monkeypatch):
    """auto prefers a CUDA device that really computes, falls back to the CPU when CUDA is listed but broken;
    a named device that is missing, or an unknown name, is one readable UserError."""
    import torch

    from explorer.core import devices
    from explorer.core.errors import UserError

    assert devices.choose_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    tried = []
    monkeypatch.setattr(devices, "_works", lambda name: tried.append(name) or name == "cuda")
    assert devices.choose_device("auto").type == "cuda" and tried == ["cuda"]
    monkeypatch.setattr(devices, "_works", lambda name: False)  # listed, but allocation fails (driver, memory)
    assert devices.choose_device("auto").type == "cpu"
    with pytest.raises(UserError, match="not available"):
        devices.choose_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        devices.choose_device("tpu")
