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


def test_device_cpu():
    from explorer.core.devices import choose_device

    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
