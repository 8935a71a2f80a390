"""checkpointed_rnn: gradients of full BPTT for any cell, policy and budget; memory as planned; errors."""

from __future__ import annotations

import doctest
import gc
import subprocess
import sys
import weakref

import pytest
import torch
from torch import nn

from explorer.papers.bptt import api
from explorer.papers.bptt.api import checkpointed_rnn, memory_probe, plan_for
from explorer.papers.bptt.planner import Planner

POLICIES = ("hsm", "ism", "msm")
BUDGETS = (
    {"memory": 1},
    {"memory": 2.5},
    {"memory": 6},
    {"memory_fraction": 0.1},
    {"memory_fraction": 0.5},
    {"memory_fraction": 1.0},
)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class TwoSizeCell(nn.Module):
    """A custom cell whose state is a tuple of two tensors of different sizes."""

    def __init__(self, n_in: int, hidden: int, extra: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in + hidden + extra, hidden)
        self.mem = nn.Linear(hidden, extra)

    def forward(self, x, state):
        h, m = state
        h2 = torch.tanh(self.lin(torch.cat([x, h, m], dim=-1)))
        return h2, 0.9 * m + torch.sigmoid(self.mem(h2))


def make(
    kind: str,
    T: int = 13,
    batch: int = 2,
    n_in: int = 3,
    hidden: int = 5,
    dtype=torch.float64,
    seed: int = 0,
    x_grad: bool = True,
    h_grad: bool = True,
):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "lstm":
        cell = nn.LSTMCell(n_in, hidden)
        shapes = [(batch, hidden), (batch, hidden)]
    elif kind == "gru":
        cell = nn.GRUCell(n_in, hidden)
        shapes = [(batch, hidden)]
    else:
        cell = TwoSizeCell(n_in, hidden, 2)
        shapes = [(batch, hidden), (batch, 2)]
    cell = cell.to(dtype)
    x = torch.randn(T, batch, n_in, generator=g, dtype=dtype).requires_grad_(x_grad)
    hs = tuple(torch.randn(*s, generator=g, dtype=dtype).requires_grad_(h_grad) for s in shapes)
    state = hs[0] if kind == "gru" else hs
    w_out = torch.randn(T, batch, hidden, generator=g, dtype=dtype)
    w_fin = [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]
    return cell, x, state, w_out, w_fin


def loop(cell, x, state):
    """Ordinary BPTT: the Python loop under autograd."""
    outs = []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        outs.append(state if torch.is_tensor(state) else state[0])
    return torch.stack(outs), state


def as_tuple(s):
    return (s,) if torch.is_tensor(s) else tuple(s)


def loss_of(outputs, final, w_out, w_fin, on=("outputs", "final")):
    loss = outputs.new_zeros(())
    if "outputs" in on:
        loss = loss + (torch.tanh(outputs) * w_out).sum()
    if "final" in on:
        for f, w in zip(as_tuple(final), w_fin):
            loss = loss + (f * f * w).sum()
    return loss


def wrt(cell, x, state):
    return [t for t in (x, *as_tuple(state), *cell.parameters()) if t.requires_grad]


def grads(fn, cell, x, state, w_out, w_fin, on=("outputs", "final")):
    outputs, final = fn(cell, x, state)
    ts = wrt(cell, x, state)
    return outputs, final, torch.autograd.grad(loss_of(outputs, final, w_out, w_fin, on), ts, allow_unused=True)


def rel_err(a, b) -> float:
    num = sum(float((x - y).double().norm() ** 2) for x, y in zip(a, b)) ** 0.5
    den = sum(float(y.double().norm() ** 2) for y in b) ** 0.5
    return num / max(den, 1e-300)


# ------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("kind", ["lstm", "gru", "two"])
@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_equal_full_bptt(kind, policy):
    cell, x, state, w_out, w_fin = make(kind)
    o_ref, f_ref, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    for budget in BUDGETS:
        with memory_probe() as rec:
            o, f, g = grads(
                lambda c, xx, s: checkpointed_rnn(c, xx, s, policy=policy, **budget), cell, x, state, w_out, w_fin
            )
        assert torch.equal(o, o_ref), budget
        assert all(torch.equal(a, b) for a, b in zip(as_tuple(f), as_tuple(f_ref))), budget
        assert type(f) is type(f_ref)
        assert len(g) == len(g_ref) == 1 + len(as_tuple(state)) + len(list(cell.parameters()))
        assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12, (budget, policy)
        r = rec[0]
        assert r.forward_steps == r.plan.cost, budget  # the plan's forward steps, no more
        assert r.plan.peak_memory <= r.memory + 1e-9
        assert r.bytes_after_backward == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_float32_relative_error(policy):
    cell, x, state, w_out, w_fin = make("lstm", T=60, batch=3, n_in=4, hidden=16, dtype=torch.float32, seed=3)
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    for frac in (0.05, 0.25):
        _, _, g = grads(lambda c, xx, s: checkpointed_rnn(c, xx, s, frac, policy=policy), cell, x, state, w_out, w_fin)
        assert rel_err(g, g_ref) < 1e-5
        for a, b in zip(g, g_ref):
            assert rel_err([a], [b]) < 1e-5


@pytest.mark.parametrize("on", [("final",), ("outputs",)])
@pytest.mark.parametrize("kind", ["lstm", "two"])
def test_loss_on_final_state_only_or_outputs_only(kind, on):
    cell, x, state, w_out, w_fin = make(kind, T=11, seed=4)
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin, on)
    for policy in POLICIES:
        for budget in ({"memory": 2}, {"memory_fraction": 0.3}):
            _, _, g = grads(
                lambda c, xx, s: checkpointed_rnn(c, xx, s, policy=policy, **budget), cell, x, state, w_out, w_fin, on
            )
            assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12, (policy, budget)


def test_loss_on_the_first_state_tensor_of_the_last_step_only():
    cell, x, state, w_out, _ = make("lstm", T=9, seed=5)
    ref = torch.autograd.grad((loop(cell, x, state)[1][0] * w_out[-1]).sum(), wrt(cell, x, state))
    f = checkpointed_rnn(cell, x, state, memory=2)[1]
    got = torch.autograd.grad((f[0] * w_out[-1]).sum(), wrt(cell, x, state))
    assert max(float((a - b).abs().max()) for a, b in zip(got, ref)) < 1e-12


@pytest.mark.parametrize("x_grad,h_grad", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_inputs_and_state_with_or_without_grad(kind, x_grad, h_grad):
    cell, x, state, w_out, w_fin = make(kind, T=10, seed=6, x_grad=x_grad, h_grad=h_grad)
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    o, f, g = grads(lambda c, xx, s: checkpointed_rnn(c, xx, s, memory=3, policy="msm"), cell, x, state, w_out, w_fin)
    assert len(g) == len(g_ref)
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12
    assert o.requires_grad and all(t.requires_grad for t in as_tuple(f))
    # .backward() fills .grad only where asked
    cell.zero_grad()
    loss_of(*checkpointed_rnn(cell, x, state, memory=3), w_out, w_fin).backward()
    assert (x.grad is not None) == x_grad
    assert all((s.grad is not None) == h_grad for s in as_tuple(state))


def test_frozen_parameters_and_only_the_state_requires_grad():
    cell, x, state, w_out, w_fin = make("lstm", T=8, seed=7, x_grad=False, h_grad=True)
    for p in cell.parameters():
        p.requires_grad_(False)
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    _, _, g = grads(lambda c, xx, s: checkpointed_rnn(c, xx, s, memory=2), cell, x, state, w_out, w_fin)
    assert len(g) == 2
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12
    cell.weight_hh.requires_grad_(True)  # some parameters trained, some frozen
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    _, _, g = grads(lambda c, xx, s: checkpointed_rnn(c, xx, s, memory=2), cell, x, state, w_out, w_fin)
    assert len(g) == 3
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12


@pytest.mark.parametrize("T", [1, 2, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "two"])
def test_short_sequences_and_the_smallest_budget(kind, T):
    cell, x, state, w_out, w_fin = make(kind, T=T, seed=8)
    _, _, g_ref = grads(loop, cell, x, state, w_out, w_fin)
    for policy in POLICIES:
        with memory_probe() as rec:
            _, _, g = grads(
                lambda c, xx, s: checkpointed_rnn(c, xx, s, memory=1, policy=policy), cell, x, state, w_out, w_fin
            )
        assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12
        assert rec[0].forward_steps == T * (T + 1) // 2  # one slot: every step recomputed from h_0


def test_training_loop_matches_full_bptt_step_for_step():
    torch.manual_seed(0)
    cells = [nn.LSTMCell(4, 12) for _ in range(2)]
    cells[1].load_state_dict(cells[0].state_dict())
    heads = [nn.Linear(12, 3) for _ in range(2)]
    heads[1].load_state_dict(heads[0].state_dict())
    opts = [torch.optim.SGD([*c.parameters(), *h.parameters()], lr=0.1) for c, h in zip(cells, heads)]
    x, y = torch.randn(40, 5, 4), torch.randint(0, 3, (40, 5))
    s0 = (torch.zeros(5, 12), torch.zeros(5, 12))
    for _ in range(3):
        for i, fn in enumerate((loop, lambda c, xx, s: checkpointed_rnn(c, xx, s, memory_fraction=0.05))):
            out, _ = fn(cells[i], x, s0)
            loss = nn.functional.cross_entropy(heads[i](out).flatten(0, 1), y.flatten())
            opts[i].zero_grad()
            loss.backward()
            opts[i].step()
    for a, b in zip(cells[0].parameters(), cells[1].parameters()):
        assert float((a - b).detach().abs().max()) < 1e-6


@pytest.mark.parametrize("api_first", [True, False])
def test_autocast_is_reentered_for_recomputed_steps(api_first):
    """Steps recomputed in backward run under the caller's autocast; casts are never cached (a cast cached by a
    step run without grad would carry no gradient), so the reference is the loop under autocast without the
    cache (with it, the loop sums the weight gradient over all steps in bfloat16)."""
    cell, x, state, w_out, w_fin = make("two", T=12, dtype=torch.float32, seed=20)
    api_fn = lambda c, xx, s: checkpointed_rnn(c, xx, s, memory=2)  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if api_first:
            o, f, g = grads(api_fn, cell, x, state, w_out, w_fin)
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            o_ref, f_ref, g_ref = grads(loop, cell, x, state, w_out, w_fin)
        _, _, g_cached = grads(loop, cell, x, state, w_out, w_fin)
        if not api_first:
            o, f, g = grads(api_fn, cell, x, state, w_out, w_fin)
    assert f_ref[0].dtype == torch.bfloat16 and f[0].dtype == torch.bfloat16  # the cell ran under autocast
    assert torch.equal(o.float(), o_ref.float())
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) == 0.0
    assert rel_err(g, g_cached) < 0.05


# ------------------------------------------------------------------------------------------ memory
class Recording(nn.Module):
    """An LSTM cell that keeps a weak reference to every state tensor it returns."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        self.made = []

    def forward(self, x, state):
        out = self.cell(x, state)
        self.made += [(weakref.ref(t), torch.is_grad_enabled()) for t in out]
        return out


@pytest.mark.parametrize("policy,budget", [("hsm", 3), ("ism", 6.5), ("msm", 7)])
def test_forward_keeps_only_what_the_plan_stores(policy, budget):
    T = 30
    base, x, state, w_out, w_fin = make("lstm", T=T, hidden=16, batch=4, seed=9)
    cell = Recording(base)
    with memory_probe() as rec:
        out, fin = checkpointed_rnn(cell, x, state, memory=budget, policy=policy)
    gc.collect()
    r = rec[0]
    n_si = int((r.plan.schedule.ops == 2).sum())
    alive_graph = [t for ref, g in cell.made if g and (t := ref()) is not None]
    alive_plain = [t for ref, g in cell.made if not g and (t := ref()) is not None]
    assert not alive_plain  # states computed without grad are not kept as such
    assert len(alive_graph) <= 2 * (n_si + 1)  # stored internal states + the register (h, c each)
    assert all(t.grad_fn is not None for t in alive_graph)
    # live bytes between forward and backward: at most the plan's stored states plus the last step's graph
    assert r.bytes_after_forward <= (r.plan.peak_memory + r.alpha) * r.state_bytes
    assert r.bytes_after_forward < 0.1 * (r.full_memory * r.state_bytes)  # full BPTT: every step's graph
    # the outputs hold no graph of their own: their only node is the function's
    assert out.grad_fn is not None and "CheckpointedRNN" in out.grad_fn.name()
    assert all(t.grad_fn is out.grad_fn for t in fin)
    loss_of(out, fin, w_out, w_fin).backward()
    assert r.tracker.peak <= (r.plan.peak_memory + r.alpha) * r.state_bytes
    assert r.bytes_after_backward == 0
    del out, fin, alive_graph
    gc.collect()
    assert all(ref() is None for ref, _ in cell.made)


def test_dropping_the_outputs_without_backward_frees_everything():
    base, x, state, _, _ = make("lstm", T=20, seed=10)
    cell = Recording(base)
    with memory_probe() as rec:
        out, fin = checkpointed_rnn(cell, x, state, memory=4, policy="msm")
    assert rec[0].bytes_after_forward > 0
    del out, fin
    gc.collect()
    assert all(ref() is None for ref, _ in cell.made)
    assert rec[0].tracker.current == 0


def test_memory_fraction_is_of_full_bptt():
    cell, x, state, *_ = make("lstm", T=40, seed=11)
    with memory_probe() as rec:
        checkpointed_rnn(cell, x, state, memory_fraction=0.1)
    r = rec[0]
    assert r.alpha == pytest.approx(4.5)  # nn.LSTMCell: (h, c, 4H gates, 1H, outputs h, c) / 2H
    assert r.memory == pytest.approx(0.1 * (1 + 39 * 4.5))
    assert r.plan is plan_for(40, 4.5, 0.1)  # cached
    import numpy as np

    with memory_probe() as rec2:
        checkpointed_rnn(cell, x, state, memory_fraction=np.float32(0.1))
    assert rec2[0].memory == pytest.approx(r.memory)
    assert r.plan.cost == Planner(40, "msm", 4.5).cost(0.1 * (1 + 39 * 4.5))


# ------------------------------------------------------------------------------------------ no_grad, errors
def test_under_no_grad_it_just_runs():
    base, x, state, *_ = make("lstm", T=12, seed=12)
    cell = Recording(base)
    ref_o, ref_f = loop(base, x, state)
    with torch.no_grad(), memory_probe() as rec:
        o, f = checkpointed_rnn(cell, x, state, memory_fraction=0.05)
    assert not rec and len(cell.made) == 2 * 12  # no plan, each step once
    assert not o.requires_grad and torch.equal(o, ref_o)
    assert all(torch.equal(a, b) for a, b in zip(f, ref_f))
    with torch.inference_mode():
        o2, _ = checkpointed_rnn(base, x, state, memory=1)
    assert torch.equal(o2, ref_o)


def test_infeasible_budgets_name_the_smallest_feasible_one(monkeypatch):
    cell, x, state, *_ = make("lstm", T=3, seed=13)
    with pytest.raises(ValueError, match=r"smallest feasible budget is memory=1 slot"):
        checkpointed_rnn(cell, x, state, memory=0.5)
    with pytest.raises(
        ValueError,
        match=r"memory_fraction=0.05 .*smallest feasible budget is memory=1 slot .*"
        r"memory_fraction=0.1 of full BPTT's 10 slots",
    ):
        checkpointed_rnn(cell, x, state, memory_fraction=0.05)  # full BPTT: 1 + 2 * 4.5 = 10 slots
    checkpointed_rnn(cell, x, state, memory_fraction=0.1)
    # a plan with more forward steps than the executor runs
    monkeypatch.setattr(api, "MAX_SCHEDULE_ACTIONS", 40)
    api._plan.cache_clear()
    cell, x, state, *_ = make("gru", T=12, seed=13)
    with pytest.raises(ValueError, match=r"infeasible .* 78 forward steps.*smallest feasible budget is memory=2 "):
        checkpointed_rnn(cell, x, state, memory=1, policy="hsm")
    assert Planner(12, "hsm", 8.0).cost(2) <= 40
    api._plan.cache_clear()


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({}, "exactly one budget"),
        ({"memory": 2, "memory_fraction": 0.1}, "exactly one budget"),
        ({"memory": -1}, "positive finite"),
        ({"memory_fraction": float("nan")}, "positive finite"),
        ({"memory": 2, "policy": "revolve"}, "unknown policy"),
    ],
)
def test_bad_arguments(kwargs, msg):
    cell, x, state, *_ = make("gru", T=4, seed=14)
    with pytest.raises(ValueError, match=msg):
        checkpointed_rnn(cell, x, state, **kwargs)


def test_random_cells_are_refused_and_eval_mode_works():
    class Dropped(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 5).double()
            self.drop = nn.Dropout(0.3)

        def forward(self, x, h):
            return self.drop(self.cell(x, h))

    cell = Dropped()
    _, x, h, *_ = make("gru", T=6, seed=15)
    with pytest.raises(ValueError, match="random numbers"):
        checkpointed_rnn(cell, x, h, memory=2)
    cell.eval()
    o, _ = checkpointed_rnn(cell, x, h, memory=2)
    o.sum().backward()


def test_a_cell_using_an_outside_tensor_is_refused():
    cell, x, state, *_ = make("gru", T=5, seed=16)
    outside = torch.randn(5, dtype=torch.float64, requires_grad=True)

    class Leaky(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.cell, self.scale = cell, scale

        def forward(self, x, h):
            return self.cell(x, h) * self.scale

    with pytest.raises(ValueError, match="none of its parameters"):
        checkpointed_rnn(Leaky(outside), x, state, memory=2)
    with pytest.raises(ValueError, match="computed outside"):
        checkpointed_rnn(Leaky(outside * 2), x, state, memory=2)
    checkpointed_rnn(Leaky(outside.detach()), x, state, memory=2)


def test_a_cell_changing_the_state_structure_is_refused():
    _, x, state, *_ = make("lstm", T=4, seed=17)

    class HalfLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 5).double()

        def forward(self, x, s):
            return self.cell(x, s[0])

    with pytest.raises(ValueError, match="must return a state like"):
        checkpointed_rnn(HalfLSTM(), x, state, memory=2)


def test_backward_runs_once():
    cell, x, state, *_ = make("gru", T=5, seed=18)
    o, _ = checkpointed_rnn(cell, x, state, memory=2)
    loss = o.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_in_place_change_of_the_inputs_is_caught():
    cell, x, state, *_ = make("gru", T=5, seed=19, x_grad=False)
    o, _ = checkpointed_rnn(cell, x, state, memory=2)
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        o.sum().backward()


# ------------------------------------------------------------------------------------------ step_loss
class Head(nn.Module):
    """A read-out and its loss at every step: cross-entropy for a state of 5 (LSTM, GRU), a squared error
    through tanh for the custom cell (so every kind has a non-linear loss of the output)."""

    def __init__(
        self, kind: str, T: int, batch: int = 2, hidden: int = 5, classes: int = 4, dtype=torch.float64, seed: int = 0
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(100 + seed)
        self.kind = kind
        self.lin = nn.Linear(hidden, classes).to(dtype)
        with torch.no_grad():
            for p in self.lin.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
        self.y = torch.randint(0, classes, (T, batch), generator=g)
        self.target = torch.randn(T, batch, classes, generator=g, dtype=dtype)

    def forward(self, h, t):
        if self.kind == "two":
            return ((torch.tanh(self.lin(h)) - self.target[t]) ** 2).sum()
        return nn.functional.cross_entropy(self.lin(h), self.y[t])


def loop_loss(cell, x, state, fn):
    """Ordinary BPTT with the loss inside the loop (the reference of step_loss)."""
    total = 0
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        total = total + fn(state if torch.is_tensor(state) else state[0], t)
    return total, state


def grads_loss(fn_rnn, cell, x, state, head, w_fin=None, scale=1.0):
    """(loss, final, gradients w.r.t. inputs, state, cell and read-out) of scale * loss [+ a loss on the final
    state]."""
    loss, final = fn_rnn(cell, x, state)
    total = scale * loss
    if w_fin is not None:
        total = total + sum((f * f * w).sum() for f, w in zip(as_tuple(final), w_fin))
    ts = wrt(cell, x, state) + list(head.parameters())
    return loss, final, torch.autograd.grad(total, ts, allow_unused=True)


@pytest.mark.parametrize("kind", ["lstm", "gru", "two"])
@pytest.mark.parametrize("policy", POLICIES)
def test_step_loss_gradients_equal_full_bptt(kind, policy):
    cell, x, state, _, w_fin = make(kind, T=13)
    head = Head(kind, T=13)
    for final_too in (False, True):
        l_ref, f_ref, g_ref = grads_loss(
            lambda c, xx, s: loop_loss(c, xx, s, head), cell, x, state, head, w_fin if final_too else None, scale=1 / 13
        )
        for budget in BUDGETS:
            with memory_probe() as rec:
                l, f, g = grads_loss(
                    lambda c, xx, s: checkpointed_rnn(c, xx, s, policy=policy, step_loss=head, **budget),
                    cell,
                    x,
                    state,
                    head,
                    w_fin if final_too else None,
                    scale=1 / 13,
                )
            assert torch.equal(l, l_ref), budget  # the same sum, in the same order
            assert all(torch.equal(a, b) for a, b in zip(as_tuple(f), as_tuple(f_ref)))
            assert len(g) == len(g_ref) == 1 + len(as_tuple(state)) + len(list(cell.parameters())) + 2
            assert all(a is not None for a in g)  # the read-out's weight and bias too
            assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12, (budget, policy)
            r = rec[0]
            assert r.forward_steps == r.plan.cost  # the loss adds no cell step
            assert r.loss_evaluations == 2 * 13  # once forward (value), once in backward
            assert r.bytes_after_backward == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_step_loss_float32_relative_error_against_a_stacked_readout(policy):
    """The usual way to write full BPTT (the read-out applied to the stacked outputs, one big matmul) sums in
    another order: equal to float32 rounding."""
    cell, x, state, *_ = make("lstm", T=60, batch=3, n_in=4, hidden=16, dtype=torch.float32, seed=3)
    head = Head("lstm", T=60, batch=3, hidden=16, classes=7, dtype=torch.float32, seed=3)
    out, _ = loop(cell, x, state)
    ts = wrt(cell, x, state) + list(head.parameters())
    ref = nn.functional.cross_entropy(head.lin(out).flatten(0, 1), head.y.flatten())
    g_ref = torch.autograd.grad(ref, ts)
    for frac in (0.05, 0.1, 0.25):
        loss, _ = checkpointed_rnn(cell, x, state, frac, policy=policy, step_loss=head)
        g = torch.autograd.grad(loss / 60, ts)
        assert float(loss.detach()) / 60 == pytest.approx(float(ref.detach()), rel=1e-6)
        assert rel_err(g, g_ref) < 1e-5
        for a, b in zip(g, g_ref):
            assert rel_err([a], [b]) < 1e-5


def test_step_loss_backward_fills_grad_of_the_readout_like_full_bptt():
    """.backward() in a training loop: a function step_loss with loss_params=the read-out, and several ways
    to name the parameters (a module, a list of modules and tensors, the loss being a module itself)."""
    cell, x, state, *_ = make("lstm", T=20, seed=21)
    head = Head("lstm", T=20, seed=21)
    fn = lambda h, t: nn.functional.cross_entropy(head.lin(h), head.y[t])  # noqa: E731

    def run(rnn):
        cell.zero_grad()
        head.zero_grad()
        for s in (x, *state):
            s.grad = None
        loss, _ = rnn()
        (loss / 20).backward()
        return [t.grad.clone() for t in (x, *state, *cell.parameters(), *head.parameters())]

    ref = run(lambda: loop_loss(cell, x, state, fn))
    for kwargs in (
        {"step_loss": fn, "loss_params": head.lin},
        {"step_loss": fn, "loss_params": head},
        {"step_loss": fn, "loss_params": [head.lin.weight, head.lin.bias]},
        {"step_loss": fn, "loss_params": (m for m in [head.lin])},
        {"step_loss": head},
    ):
        got = run(lambda: checkpointed_rnn(cell, x, state, memory_fraction=0.1, **kwargs))
        assert max(float((a - b).abs().max()) for a, b in zip(got, ref)) < 1e-12, kwargs


def test_step_loss_with_a_parameter_shared_with_the_cell_and_per_step_heads():
    """Step-dependent losses (two read-outs, alternating) and a loss that reuses a cell parameter."""
    cell, x, state, *_ = make("gru", T=15, seed=22)
    heads = [Head("gru", T=15, seed=22 + i) for i in range(2)]

    def fn(h, t):
        return heads[t % 2](h, t) + 0.1 * (cell.bias_hh[:5] * h).sum()

    params = [*cell.parameters(), *heads[0].parameters(), *heads[1].parameters()]
    ts = [x, state, *params]
    l_ref, _ = loop_loss(cell, x, state, fn)
    g_ref = torch.autograd.grad(l_ref, ts)
    loss, _ = checkpointed_rnn(cell, x, state, memory=2.5, step_loss=fn, loss_params=heads)
    g = torch.autograd.grad(loss, ts)
    assert torch.equal(loss, l_ref)
    assert rel_err(g, g_ref) < 1e-12


def test_step_loss_unused_or_final_state_only():
    cell, x, state, _, w_fin = make("lstm", T=9, seed=23)
    head = Head("lstm", T=9, seed=23)
    ts = wrt(cell, x, state) + list(head.parameters())
    _, f_ref = loop_loss(cell, x, state, head)
    g_ref = torch.autograd.grad(sum((f * w).sum() for f, w in zip(f_ref, w_fin)), ts, allow_unused=True)
    _, f = checkpointed_rnn(cell, x, state, memory=2, step_loss=head)
    g = torch.autograd.grad(sum((a * w).sum() for a, w in zip(f, w_fin)), ts, allow_unused=True)
    assert g[-1] is None and g[-2] is None and g_ref[-1] is None
    assert max(float((a - b).abs().max()) for a, b in zip(g[:-2], g_ref[:-2])) < 1e-12


@pytest.mark.parametrize("x_grad,h_grad", [(False, False), (True, True)])
def test_step_loss_with_a_frozen_cell_trains_the_readout_only(x_grad, h_grad):
    cell, x, state, *_ = make("gru", T=8, seed=24, x_grad=x_grad, h_grad=h_grad)
    for p in cell.parameters():
        p.requires_grad_(False)
    head = Head("gru", T=8, seed=24)
    ts = [t for t in (x, state) if t.requires_grad] + list(head.parameters())
    g_ref = torch.autograd.grad(loop_loss(cell, x, state, head)[0], ts)
    loss, _ = checkpointed_rnn(cell, x, state, memory=2, step_loss=head)
    assert loss.requires_grad
    g = torch.autograd.grad(loss, ts)
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) < 1e-12


@pytest.mark.parametrize("T", [1, 2, 3])
def test_step_loss_short_sequences_and_the_smallest_budget(T):
    cell, x, state, *_ = make("two", T=T, seed=29)
    head = Head("two", T=T, seed=29)
    ts = wrt(cell, x, state) + list(head.parameters())
    ref = loop_loss(cell, x, state, head)[0]
    g_ref = torch.autograd.grad(ref, ts, allow_unused=True)  # T=1: the memory's layer is not used
    for policy in POLICIES:
        loss = checkpointed_rnn(cell, x, state, memory=1, policy=policy, step_loss=head)[0]
        assert torch.equal(loss, ref)
        g = torch.autograd.grad(loss, ts, allow_unused=True)
        assert [a is None for a in g] == [b is None for b in g_ref]
        assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref) if a is not None) < 1e-12


@pytest.mark.parametrize("policy,budget", [("hsm", 3), ("ism", 6.5), ("msm", 7), ("msm", 2)])
def test_step_loss_keeps_the_budget_including_the_readout(policy, budget):
    """Saved-tensor accounting: the call never holds more than the plan's stored states, one step's graph in
    forward and one more in backward (alpha each) and one step's loss graph; the outputs and the logits of the
    whole sequence never exist."""
    T, hidden, classes = 40, 16, 64  # a read-out larger than the state: its graph is visible
    cell, x, state, *_ = make("lstm", T=T, hidden=hidden, batch=4, seed=25)
    head = Head("lstm", T=T, batch=4, hidden=hidden, classes=classes, seed=25)
    # one step's loss graph, measured the same way
    tracker = api.MemoryTracker(list(head.parameters()))
    h = torch.randn(4, hidden, dtype=torch.float64, requires_grad=True)
    with tracker.hooks():
        step = head(h * 1, 0)
    loss_bytes = tracker.current
    del step
    assert loss_bytes >= 4 * (hidden + classes) * 8  # h and the log-softmax of the logits
    with memory_probe() as rec:
        loss, fin = checkpointed_rnn(cell, x, state, memory=budget, policy=policy, step_loss=head)
    r = rec[0]
    assert r.bytes_after_forward <= (r.plan.peak_memory + r.alpha) * r.state_bytes
    (loss + sum(f.sum() for f in fin)).backward()
    bound = (r.plan.peak_memory + r.alpha) * r.state_bytes + loss_bytes
    assert r.tracker.peak <= bound
    assert r.tracker.peak < 0.15 * (r.full_memory * r.state_bytes + T * loss_bytes)  # full BPTT keeps all
    assert r.bytes_after_backward == 0


def test_step_loss_never_materialises_the_outputs():
    """Every tensor created during forward and backward is watched (a dispatch mode): with step_loss none has
    the size of the outputs [T, B, H] (or the logits [T, B, V]); without it, the outputs are one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if torch.is_tensor(t):
                    self.numel = max(self.numel, t.numel())
            return out

    T, B, H, V = 50, 4, 16, 12
    cell, x, state, *_ = make("lstm", T=T, hidden=H, batch=B, n_in=3, seed=26)
    head = Head("lstm", T=T, batch=B, hidden=H, classes=V, seed=26)
    with Largest() as mode:
        loss, _ = checkpointed_rnn(cell, x, state, memory_fraction=0.1, step_loss=head)
        loss.backward()
    largest_given = max([x.numel()] + [p.numel() for p in (*cell.parameters(), *head.parameters())])
    assert mode.numel <= largest_given < T * B * min(H, V) / 2  # x's gradient [T, B, 3] or a weight's
    with Largest() as mode:
        out, _ = checkpointed_rnn(cell, x, state, memory_fraction=0.1)
        nn.functional.cross_entropy(head.lin(out).flatten(0, 1), head.y.flatten()).backward()
    assert mode.numel >= T * B * H


def test_step_loss_under_no_grad_and_autocast():
    cell, x, state, *_ = make("two", T=12, seed=27)
    head = Head("two", T=12, seed=27)
    ref, f_ref = loop_loss(cell, x, state, head)
    with torch.no_grad(), memory_probe() as rec:
        loss, f = checkpointed_rnn(cell, x, state, memory=1, step_loss=head)
    assert not rec and torch.equal(loss, ref) and all(torch.equal(a, b) for a, b in zip(f, f_ref))
    cell, x, state, *_ = make("two", T=12, seed=27, dtype=torch.float32)
    head = Head("two", T=12, seed=27, dtype=torch.float32)
    ts = wrt(cell, x, state) + list(head.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = checkpointed_rnn(cell, x, state, memory=2, step_loss=head)
        g = torch.autograd.grad(loss, ts)
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            ref, _ = loop_loss(cell, x, state, head)
            g_ref = torch.autograd.grad(ref, ts)
    assert torch.equal(loss, ref)
    assert max(float((a - b).abs().max()) for a, b in zip(g, g_ref)) == 0.0


def test_step_loss_errors():
    cell, x, state, *_ = make("gru", T=5, seed=28)
    head = Head("gru", T=5, seed=28)
    fn = lambda h, t: nn.functional.cross_entropy(head.lin(h), head.y[t])  # noqa: E731
    with pytest.raises(ValueError, match="pass the module .* as loss_params"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=fn)  # the read-out's weight not named
    with pytest.raises(ValueError, match="pass the module .* as loss_params"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=fn, loss_params=[head.lin.weight])  # bias missing
    # a parameter used only at some steps is caught at that step's backward
    late = lambda h, t: fn(h, t) + (0 if t < 3 else head.target[0, 0, 0] * 0 + h.sum() * x[t].sum())  # noqa: E731
    loss, _ = checkpointed_rnn(cell, x, state, memory=2, step_loss=late, loss_params=head)
    with pytest.raises(ValueError, match="step_loss uses a tensor"):
        loss.backward()
    with pytest.raises(ValueError, match="scalar"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=lambda h, t: head.lin(h), loss_params=head)
    drop = nn.Dropout(0.5)
    with pytest.raises(ValueError, match="step_loss draws random numbers"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=lambda h, t: fn(drop(h), t), loss_params=head)
    drop.eval()
    checkpointed_rnn(cell, x, state, memory=2, step_loss=lambda h, t: fn(drop(h), t), loss_params=head)
    outside = head.lin.weight * 2
    with pytest.raises(ValueError, match="computed outside"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=lambda h, t: (h @ outside.T).sum(), loss_params=head)
    with pytest.raises(ValueError, match="without step_loss"):
        checkpointed_rnn(cell, x, state, memory=2, loss_params=head)
    with pytest.raises(ValueError, match="loss_params must"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=fn, loss_params=3)
    with pytest.raises(ValueError, match="callable"):
        checkpointed_rnn(cell, x, state, memory=2, step_loss=3)


# ------------------------------------------------------------------------------------------ packaging
def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    tests = finder.find(api.checkpointed_rnn, "checkpointed_rnn", globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries >= 12


def test_import_is_lazy_and_exports_the_api():
    code = (
        "import sys\nimport explorer.papers.bptt as b\nassert 'torch' not in sys.modules\n"
        "f = b.checkpointed_rnn\nassert 'torch' in sys.modules and f.__module__ == 'explorer.papers.bptt.api'\n"
        "assert b.memory_probe and b.plan_for\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
