"""The polyphonic music benchmarks in the SRNN authors' npz layout (headless; numpy only).

Each ``<name>_raw_batchsize16_seqlen100.npz`` holds binary 88-key piano rolls:

* ``x_train``/``u_train`` (N, 100, 88): training chunks; ``u`` is the input (the previous frame), ``x`` the
  frame to predict. The chunks are laid out for truncated BPTT with 16 parallel streams: chunk ``j + 16``
  continues chunk ``j``, so a model may carry its hidden state from batch ``k`` to batch ``k + 1``.
* ``x_valid``/``u_valid`` (N, 100, 88): validation chunks.
* ``x_test``/``u_test`` (N, T_max, 88) whole test pieces, padded (``u_test`` with NaN); ``mask_test`` (N, T_max).

The files are never shipped with the project; commands take ``--data DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.core.errors import UserError

DATASETS = ("jsb", "nottingham", "muse", "piano")
DATASET_TITLES = {
    "jsb": "JSB Chorales",
    "nottingham": "Nottingham",
    "muse": "MuseData",
    "piano": "Piano-midi.de",
}
# The paper's Table 2 (SRNN smooth+Resq), average test log-likelihood per time step in nats.
PAPER_PER_STEP = {"jsb": -4.74, "nottingham": -2.94, "muse": -6.28, "piano": -8.20}
# The paper's plain RNN row (quoted from Boulanger-Lewandowski et al. 2012; not independently verified).
PAPER_RNN_PER_STEP = {"jsb": -8.71, "nottingham": -4.46, "muse": -8.13, "piano": -8.37}
N_KEYS = 88
LOWEST_MIDI = 21  # key 0 of the 88-key roll is A0 (MIDI 21)
STREAMS = 16  # the files' truncated-BPTT layout: 16 parallel streams
KEYS = ("x_train", "u_train", "x_valid", "u_valid", "x_test", "u_test", "mask_test")


@dataclass
class MusicData:
    name: str
    x_train: np.ndarray
    u_train: np.ndarray
    x_valid: np.ndarray
    u_valid: np.ndarray
    x_test: np.ndarray
    u_test: np.ndarray
    mask_test: np.ndarray
    source: str = ""
    info: dict[str, object] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return DATASET_TITLES.get(self.name, self.name)

    def lengths(self) -> np.ndarray:
        return self.mask_test.sum(axis=1).astype(int)

    def test_piece(self, i: int):
        """(u, x) of test piece ``i`` without padding, float32 arrays (T, 88)."""
        n = int(self.mask_test[i].sum())
        return self.u_test[i, :n], self.x_test[i, :n]

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "train_chunks": int(self.x_train.shape[0]),
            "valid_chunks": int(self.x_valid.shape[0]),
            "test_sequences": int(self.x_test.shape[0]),
            "test_steps": int(self.mask_test.sum()),
        }


def file_name(name: str) -> str:
    return f"{name}_raw_batchsize16_seqlen100.npz"


def resolve(data: os.PathLike | str, name: str) -> Path:
    """The npz file for data set ``name`` given a folder (or the file itself)."""
    if name not in DATASETS:
        raise UserError(f"unknown data set '{name}' (choose one of {', '.join(DATASETS)})")
    p = Path(data).expanduser()
    if p.is_file():
        return p
    if not p.exists():
        raise UserError(f"--data {p}: no such folder (point it at the folder with {file_name(name)})")
    f = p / file_name(name)
    if not f.exists():
        raise UserError(f"--data {p}: has no {file_name(name)} (the SRNN authors' music files)")
    return f


def load(data: os.PathLike | str, name: str) -> MusicData:
    """Load and check one data set. Raises UserError with a clear message on a wrong file."""
    path = resolve(data, name)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise UserError(f"{path.name}: missing arrays {', '.join(missing)} (expected {', '.join(KEYS)})")
            arrays = {k: np.asarray(z[k], dtype=np.float32) for k in KEYS}
    except UserError:
        raise
    except Exception as exc:  # corrupt zip, pickle refused, ...
        raise UserError(f"{path.name}: not a readable npz file ({type(exc).__name__}: {str(exc)[:200]})") from exc
    for k in ("x_train", "u_train", "x_valid", "u_valid", "x_test", "u_test"):
        a = arrays[k]
        if a.ndim != 3 or a.shape[-1] != N_KEYS:
            raise UserError(f"{path.name}: {k} has shape {a.shape}, expected (N, T, {N_KEYS})")
    if arrays["mask_test"].shape != arrays["x_test"].shape[:2]:
        raise UserError(f"{path.name}: mask_test shape {arrays['mask_test'].shape} does not match x_test")
    # Padded input steps hold NaN in the authors' files; the models never read them, but zero them anyway.
    for k in arrays:
        np.nan_to_num(arrays[k], copy=False, nan=0.0)
    return MusicData(name=name, source=str(path), **arrays)


def synthetic(
    name: str = "jsb",
    n_train: int = 32,
    n_valid: int = 16,
    n_test: int = 5,
    t_chunk: int = 100,
    t_test: int = 40,
    seed: int = 0,
    keys: int = N_KEYS,
) -> dict[str, np.ndarray]:
    """A tiny random data set in the same layout (for tests): arpeggiated chords with some noise."""
    rng = np.random.default_rng(seed)

    def piece(T):
        roll = np.zeros((T, keys), np.float32)
        root = rng.integers(20, keys - 30)
        for t in range(T):
            if t % 4 == 0:
                root = int(np.clip(root + rng.integers(-3, 4), 10, keys - 20))
            for iv in (0, 4, 7):
                roll[t, root + iv] = 1.0
            if rng.random() < 0.3:
                roll[t, rng.integers(0, keys)] = 1.0
        return roll

    def shift(x):
        u = np.zeros_like(x)
        u[:, 1:] = x[:, :-1]
        u[:, 0] = x[:, 0]
        return u

    x_train = np.stack([piece(t_chunk) for _ in range(n_train)])
    x_valid = np.stack([piece(t_chunk) for _ in range(n_valid)])
    x_test = np.stack([piece(t_test) for _ in range(n_test)])
    mask = np.ones((n_test, t_test), np.float32)
    for i in range(n_test):
        n = int(rng.integers(t_test // 2, t_test + 1))
        mask[i, n:] = 0
        x_test[i, n:] = 0
    u_test = shift(x_test)
    u_test[mask == 0] = np.nan
    return {
        "x_train": x_train,
        "u_train": shift(x_train),
        "x_valid": x_valid,
        "u_valid": shift(x_valid),
        "x_test": x_test,
        "u_test": u_test,
        "mask_test": mask,
    }


def write_synthetic(folder: os.PathLike | str, name: str = "jsb", **kw) -> Path:
    p = Path(folder) / file_name(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **synthetic(name, **kw))
    return p


def roll_from_music21(max_pieces: int = 12, steps_per_quarter: int = 2, progress=None, token=None):
    """Piano rolls of Bach chorales from the optional ``music21`` package's corpus (no network).

    Returns a list of (title, roll[T, 88] float32). Raises UserError when music21 is not installed.
    Frames are eighth notes (``steps_per_quarter=2``), close to the JSB set's quantisation.
    """
    try:
        from music21 import corpus  # optional dependency
    except Exception:
        raise UserError("the optional 'music21' package is not installed (pip install music21)") from None
    out = []
    paths = corpus.getComposer("bach")
    for path in paths:
        if token is not None:
            token.check()
        if len(out) >= max_pieces:
            break
        try:
            score = corpus.parse(path)
            flat = score.flatten().notes
            end = float(score.highestTime)
            T = int(np.ceil(end * steps_per_quarter))
            if T < 16 or T > 2000:
                continue
            roll = np.zeros((T, N_KEYS), np.float32)
            for n in flat:
                pitches = getattr(n, "pitches", ())
                t0 = int(round(float(n.offset) * steps_per_quarter))
                t1 = max(t0 + 1, int(round((float(n.offset) + float(n.quarterLength)) * steps_per_quarter)))
                for p in pitches:
                    k = int(p.midi) - LOWEST_MIDI
                    if 0 <= k < N_KEYS:
                        roll[t0:t1, k] = 1.0
            if roll.sum() == 0:
                continue
            out.append((Path(str(path)).stem, roll))
        except Exception:
            continue
        if progress is not None:
            progress(len(out) / max_pieces, f"chorale {len(out)}/{max_pieces}")
    return out


def inputs_for(x: np.ndarray) -> np.ndarray:
    """The model input u for a roll x (T, 88): the previous frame, with the first frame as its own input
    (the convention of the authors' test files)."""
    u = np.zeros_like(x)
    if len(x):
        u[1:] = x[:-1]
        u[0] = x[0]
    return u


DEMO_PIECES = 40  # test pieces per data set bundled in resources/srnn (the first ones of the authors' test split)


def demo_pieces_path(name: str) -> Path:
    from explorer.core.paths import resources_dir

    return resources_dir() / "srnn" / f"{name}_test_pieces.npz"


def write_demo_pieces(md: MusicData, out: os.PathLike | str, n: int = DEMO_PIECES) -> Path:
    """Save the first ``n`` test pieces of ``md`` as bit-packed piano rolls (a few KB) for the bundled demo."""
    arrays = {"index": np.arange(min(n, len(md.x_test)), dtype=np.int32)}
    for i in arrays["index"]:
        _, x = md.test_piece(int(i))
        arrays[f"roll_{i}"] = np.packbits(x > 0.5, axis=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def read_demo_pieces(name: str) -> list[tuple[int, np.ndarray]]:
    """The bundled test pieces of data set ``name``: [(index in the test split, x (T, 88) float32)], or []."""
    path = demo_pieces_path(name)
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as z:
        return [(int(i), np.unpackbits(z[f"roll_{i}"], axis=1, count=N_KEYS).astype(np.float32)) for i in z["index"]]


def find_data_dir(candidates: list | None = None) -> Path | None:
    """A folder with the authors' npz files: $SRNN_MUSIC_DATA, then the usual shared location, or None."""
    cands = list(candidates or [])
    env = os.environ.get("SRNN_MUSIC_DATA")
    if env:
        cands.insert(0, env)
    here = Path(__file__).resolve()
    cands += [here.parents[3].parent / "shared" / "data" / "music", Path("../shared/data/music")]
    for c in cands:
        p = Path(c)
        if p.is_dir() and any((p / file_name(n)).exists() for n in DATASETS):
            return p
    return None
