import json
import os
import pickle

import pytest
import torch
from torch import nn

from explorer.core.checkpoints import (
    CheckpointError,
    check_state_dict,
    load_model,
    read_metadata,
    save_checkpoint,
)


def build(cfg):
    return nn.Sequential(nn.Linear(cfg["n_in"], cfg["n_out"]))


@pytest.fixture
def ckpt(tmp_path):
    m = build({"n_in": 3, "n_out": 2})
    p = tmp_path / "m.safetensors"
    save_checkpoint(
        p,
        m.state_dict(),
        paper="bptt",
        model_config={"n_in": 3, "n_out": 2},
        metrics={"headline": "acc", "acc": 0.5},
        data={"name": "toy"},
    )
    return p, m


def test_round_trip_and_metadata(ckpt):
    p, m = ckpt
    meta = read_metadata(p)
    assert meta.paper == "bptt" and meta.format_version == 1
    assert meta.model_config == {"n_in": 3, "n_out": 2}
    assert meta.metrics["acc"] == 0.5 and meta.headline() == "acc 0.5"
    model, meta2 = load_model(p, "bptt", build)
    for k, v in m.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_wrong_paper_refused_before_weights(ckpt):
    p, _ = ckpt
    with pytest.raises(CheckpointError, match="for the 'bptt' tab, not 'srnn'"):
        load_model(p, "srnn", build)


def test_truncated_file(ckpt, tmp_path):
    p, _ = ckpt
    data = p.read_bytes()
    t = tmp_path / "trunc.safetensors"
    t.write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(t, "bptt", build)
    t.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated or empty"):
        read_metadata(t)


def test_garbage_file(tmp_path):
    g = tmp_path / "g.safetensors"
    g.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError):
        read_metadata(g)


def test_shape_mismatch(ckpt):
    p, _ = ckpt
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(p, "bptt", lambda cfg: build({"n_in": 4, "n_out": 2}))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_metadata(tmp_path / "nope.safetensors")


def test_unsupported_suffix(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(CheckpointError, match="unsupported file type"):
        read_metadata(f)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("EVIL_MARKER", "/tmp/evil-marker"),))


def test_pickle_with_code_is_refused_and_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"weight": _Evil()}, fh)
    torch.save({"w": _Evil()}, tmp_path / "evil2.pt")
    for f in (p, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError, match="refused|not a readable"):
            load_model(f, "bptt", build, default_config={"n_in": 3, "n_out": 2})
    assert not marker.exists()


def test_plain_state_dict_pt(tmp_path):
    m = build({"n_in": 3, "n_out": 2})
    p = tmp_path / "plain.pth"
    torch.save(m.state_dict(), p)
    model, meta = load_model(p, "bptt", build, default_config={"n_in": 3, "n_out": 2})
    assert meta.format_version == 0 and meta.paper == "bptt"
    with pytest.raises(CheckpointError, match="no model_config"):
        load_model(p, "bptt", build)


def test_check_state_dict_lists_problems():
    m = build({"n_in": 3, "n_out": 2})
    sd = dict(m.state_dict())
    sd.pop("0.bias")
    sd["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="missing tensors: 0.bias.*unexpected tensors: extra"):
        check_state_dict(m, sd)


def test_cli_info(ckpt, capsys):
    from explorer.cli import main

    p, _ = ckpt
    assert main(["info", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["paper"] == "bptt" and out["metrics"]["acc"] == 0.5
    assert main(["info", str(p.parent / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
