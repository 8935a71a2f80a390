"""Training alignments: which block emits each target digit.

* :func:`boundary_alignment`: from the known digit boundaries (a digit goes to the block holding its last frame),
  as the paper starts from forced alignments;
* :func:`best_alignments`: the paper's approximate best-alignment dynamic programme (Sec. 3.5: the best hypothesis
  per number of emitted targets at every block boundary), batched over hypotheses and utterances
  (:func:`align_search` is the search itself, for any scorer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .model import EOB, Alignment, Transducer, index_state


@torch.no_grad()
def best_alignments(model: Transducer, enc, keys, enc_len, targets: Sequence[Sequence[int]]):
    """Approximate best alignment of each target sequence (paper's DP); returns [(alignment, log p)]."""
    eb, kb, vb, W, nb = model.blockify(enc, keys, enc_len)

    def scorer(state, rows_u, b):
        u = torch.as_tensor(rows_u, device=enc.device)
        bb = torch.full_like(u, b)
        logp, _, pre = model.step(state, eb[u, bb], kb[u, bb], vb[u, bb])
        return logp, pre

    return align_search(scorer, model.init_state, model.feed, targets, nb, model.M)


def align_search(scorer, init_state, feed, targets: Sequence[Sequence[int]], n_blocks: Sequence[int], M: int):
    """Approximate best alignments by dynamic programming over blocks (Jaitly et al., Sec. 3.5).

    At every block boundary keep, for every j = number of targets emitted so far, the single best partial
    alignment (and its decoder state). Extending h(j, b) into block b+1 emits 0..M-1 further targets and then <e>.
    Exact when the model's scores depend only on (block, j); approximate otherwise (the state depends on the
    path), as in the paper.

    ``scorer(state, rows_u, b) -> (logp (n, 11), pre_state)`` scores a batch of hypotheses (utterance rows_u)
    in block b; ``init_state(n)`` and ``feed(pre_state, tokens)`` build states. Returns [(alignment, logp)].
    """
    U = len(targets)
    # hypotheses at a block boundary: lists over rows
    rows_u = list(range(U))
    rows_j = [0] * U
    rows_lp = [0.0] * U
    rows_al: list[Alignment] = [[] for _ in range(U)]
    state = init_state(U)
    result: list[tuple[Alignment, float] | None] = [None] * U
    for b in range(max(n_blocks)):
        act = [r for r in range(len(rows_u)) if b < n_blocks[rows_u[r]]]
        if not act:
            break
        idx = torch.as_tensor(act, dtype=torch.long)
        st = index_state(state, idx.to(state[0].device))
        fr_u = [rows_u[r] for r in act]
        fr_j = [rows_j[r] for r in act]
        fr_lp = [rows_lp[r] for r in act]
        fr_cur: list[list[int]] = [[] for _ in act]
        fr_prev = [rows_al[r] for r in act]
        best: dict[tuple[int, int], tuple[float, int, int, Alignment]] = {}  # (u, j') -> (lp, k, row, al)
        pres = []
        for k in range(M):
            if not fr_u:
                break
            logp, pre = scorer(st, fr_u, b)
            pres.append(pre)
            lp = logp.detach().cpu()
            nxt_rows, nxt_tok = [], []
            n_u, n_j, n_lp, n_cur, n_prev = [], [], [], [], []
            for r in range(len(fr_u)):
                u, j = fr_u[r], fr_j[r]
                S = len(targets[u])
                remaining_blocks = n_blocks[u] - b - 1
                # close the block with <e>: feasible if the rest fits in the remaining blocks
                if S - j <= remaining_blocks * (M - 1) and (remaining_blocks > 0 or j == S):
                    cand = fr_lp[r] + float(lp[r, EOB])
                    key = (u, j)
                    if key not in best or cand > best[key][0]:
                        best[key] = (cand, k, r, fr_prev[r] + [fr_cur[r]])
                if k < M - 1 and j < S:
                    y = int(targets[u][j])
                    nxt_rows.append(r)
                    nxt_tok.append(y)
                    n_u.append(u)
                    n_j.append(j + 1)
                    n_lp.append(fr_lp[r] + float(lp[r, y]))
                    n_cur.append(fr_cur[r] + [y])
                    n_prev.append(fr_prev[r])
            if nxt_rows:
                ridx = torch.as_tensor(nxt_rows, dtype=torch.long, device=pre[0].device)
                st = feed(index_state(pre, ridx), torch.as_tensor(nxt_tok, dtype=torch.long, device=pre[0].device))
            fr_u, fr_j, fr_lp, fr_cur, fr_prev = n_u, n_j, n_lp, n_cur, n_prev
        # hypotheses of utterances not in this block stay as they are
        keep = [r for r in range(len(rows_u)) if b >= n_blocks[rows_u[r]]]
        new_u = [rows_u[r] for r in keep]
        new_j = [rows_j[r] for r in keep]
        new_lp = [rows_lp[r] for r in keep]
        new_al = [rows_al[r] for r in keep]
        parts = [index_state(state, torch.as_tensor(keep, dtype=torch.long, device=state[0].device))] if keep else []
        for (u, j), (lpv, k, r, al) in sorted(best.items()):
            new_u.append(u)
            new_j.append(j)
            new_lp.append(lpv)
            new_al.append(al)
            pre = pres[k]
            ri = torch.as_tensor([r], dtype=torch.long, device=pre[0].device)
            parts.append(feed(index_state(pre, ri), torch.full((1,), EOB, dtype=torch.long, device=pre[0].device)))
        rows_u, rows_j, rows_lp, rows_al = new_u, new_j, new_lp, new_al
        state = tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))
    for r in range(len(rows_u)):
        u = rows_u[r]
        if rows_j[r] == len(targets[u]) and len(rows_al[r]) == n_blocks[u]:
            if result[u] is None or rows_lp[r] > result[u][1]:
                result[u] = (rows_al[r], rows_lp[r])
    return result


def boundary_alignment(
    bounds_end_samples: Sequence[int], digits: Sequence[int], n_enc: int, model: Transducer
) -> Alignment:
    """Each digit goes to the block holding its last frame; overfull blocks spill into the next block."""
    fc = model.logmel.cfg
    W = model.block_frames(n_enc)
    NB = model.n_blocks(n_enc)
    al: Alignment = [[] for _ in range(NB)]
    b_prev = 0
    for d, end in zip(digits, bounds_end_samples):
        last_feat = max(0, (int(end) - 1) // fc.hop)
        b = min(NB - 1, (last_feat // model.cfg["stack"]) // W)
        b = max(b, b_prev)
        while b < NB - 1 and len(al[b]) >= model.M - 1:
            b += 1
        al[b].append(int(d))
        b_prev = b
    # a final overfull block (only possible at the very end) pushes digits back into earlier blocks
    for b in range(NB - 1, 0, -1):
        while len(al[b]) > model.M - 1:
            al[b - 1].append(al[b].pop(0))
    return al
