"""bptt CLI: bptt-plan (JSON and summary), infeasible budgets, no training, a tiny eval."""

from __future__ import annotations

import json

import pytest

from explorer.cli import main


def test_bptt_plan_json_passes_validator(capsys):
    from explorer.papers.bptt.schedule import Schedule, validate

    assert main(["bptt-plan", "--length", "30", "--memory", "6.5", "--policy", "msm", "--alpha", "2.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"length", "memory", "policy", "alpha", "cost", "peak_memory", "schedule"}
    rep = validate(Schedule.from_actions(d["schedule"], d["length"], d["alpha"]), d["memory"])
    assert rep.cost == d["cost"] and rep.peak_memory == d["peak_memory"] <= 6.5


@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
def test_bptt_plan_summary(capsys, policy):
    assert main(["bptt-plan", "-T", "100", "-M", "20", "--policy", policy]) == 0
    out = capsys.readouterr().out
    assert "cost Q =" in out and policy.upper() in out


def test_infeasible_budget_is_one_line_error(capsys):
    assert main(["bptt-plan", "-T", "10", "-M", "0.5", "--policy", "hsm"]) == 2
    err = capsys.readouterr().err
    assert "infeasible" in err and "Traceback" not in err
    assert main(["bptt-plan", "-T", "10", "-M", "3", "--alpha", "0.5"]) == 2


def test_train_is_refused(capsys):
    assert main(["train", "bptt"]) == 2
    assert "no model to train" in capsys.readouterr().err


def test_eval_json_tiny(capsys):
    assert (
        main(
            [
                "--device",
                "cpu",
                "eval",
                "bptt",
                "--length",
                "40",
                "--hidden",
                "8",
                "--batch",
                "2",
                "--fractions",
                "0.1",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["alpha"] == pytest.approx(4.5)
    for r in d["runs"]:
        assert r["forward_count_matches"] and r["grad_max_abs_diff"] < 1e-5
        assert r["checkpoint"]["grad_max_abs_diff"] < 1e-5
    assert {"hsm", "ism", "msm"} <= set(d["cost_table"][0])
