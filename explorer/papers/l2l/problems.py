"""Optimizee problems with *functional* losses: the parameters are one flat plain tensor θ, never nn.Parameters.

Every problem is fully determined by its seed (data, initial point, minibatch order), so every optimizer in a
comparison sees exactly the same problems. ``loss(θ, t)`` returns per-instance losses of shape
(n_instances,) for step t (the minibatch of step t for MNIST); optimizers differentiate their *sum* (so each
batched instance gets its own gradient) and report the mean. ``final_loss(θ)`` is the noise-free loss used for
the "final loss" numbers: the full held-out image set for MNIST problems, the loss itself otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .catalog import EVAL_PROBLEMS, PROBLEMS, STYLE_PROBLEMS, ProblemInfo  # noqa: F401  (re-exported)

TRAIN_SEED_BASE = 0  # meta-training draws seeds base + k
TUNE_SEED_BASE = 1_000_000_000  # baseline learning-rate tuning problems
EVAL_SEED_BASE = 2_000_000_000  # held-out evaluation problems


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) % (2**63))
    return g


class Problem:
    name: str = ""
    n_instances: int = 1
    n_params: int = 0
    steps: int = 100

    def init_params(self) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        raise NotImplementedError

    def final_loss(self, theta: torch.Tensor) -> torch.Tensor:
        return self.loss(theta, self.steps)


class QuadraticProblem(Problem):
    """A batch of independent random quadratics f(θ) = ||Wθ − y||², W (d×d) and y IID standard normal (paper).

    θ0 ~ N(0, 0.01²) as in the official code. The flat parameter vector holds all instances: (batch·d,).
    """

    def __init__(
        self,
        batch: int = 128,
        dim: int = 10,
        seed: int = 0,
        steps: int = 100,
        device: Any = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        g = _gen(seed)
        self.name = "quadratic"
        self.batch, self.dim, self.steps = int(batch), int(dim), int(steps)
        self.n_instances = self.batch
        self.n_params = self.batch * self.dim
        self.W = torch.randn(self.batch, self.dim, self.dim, generator=g).to(device=device, dtype=dtype)
        self.y = torch.randn(self.batch, self.dim, generator=g).to(device=device, dtype=dtype)
        self.theta0 = (0.01 * torch.randn(self.n_params, generator=g)).to(device=device, dtype=dtype)

    def init_params(self) -> torch.Tensor:
        return self.theta0.clone()

    def loss(self, theta: torch.Tensor, t: int = 0) -> torch.Tensor:
        th = theta.view(self.batch, self.dim, 1)
        r = torch.bmm(self.W, th).squeeze(2) - self.y
        return (r * r).sum(dim=1)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """Analytic gradient 2 Wᵀ(Wθ − y) of the summed loss (used by tests)."""
        th = theta.view(self.batch, self.dim, 1)
        r = torch.bmm(self.W, th) - self.y.unsqueeze(2)
        return (2 * torch.bmm(self.W.transpose(1, 2), r)).reshape(-1)

    def select(self, lo: int, hi: int) -> QuadraticProblem:
        """Instances ``lo:hi`` of this batch as a problem of their own (one process's share of a batch drawn
        from one seed: the shares of all processes together are exactly the whole batch)."""
        q = object.__new__(QuadraticProblem)
        q.name, q.dim, q.steps = self.name, self.dim, self.steps
        q.batch = q.n_instances = int(hi) - int(lo)
        q.n_params = q.batch * self.dim
        q.W, q.y = self.W[lo:hi].clone(), self.y[lo:hi].clone()
        q.theta0 = self.theta0[lo * self.dim : hi * self.dim].clone()
        return q


_ACT = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


class MLPProblem(Problem):
    """Train an MLP classifier (cross-entropy) on image minibatches of 128, as in the paper's MNIST task.

    The default is the paper's net: 784 → 20 sigmoid → 10. Weights use PyTorch's nn.Linear initialisation
    (uniform ±1/√fan_in), drawn from the problem's seed; minibatch t is drawn with replacement from the images.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        hidden: Sequence[int] = (20,),
        activation: str = "sigmoid",
        batch_size: int = 128,
        steps: int = 100,
        seed: int = 0,
        device: Any = "cpu",
        name: str = "mnist",
    ) -> None:
        g = _gen(seed)
        self.name = name
        self.steps = int(steps)
        self.n_instances = 1
        self.act = _ACT[activation]
        self.activation = activation
        sizes = [images.shape[1], *[int(h) for h in hidden], int(labels.max()) + 1 if len(labels) else 10]
        sizes[-1] = max(sizes[-1], 10)
        self.shapes: list[tuple[int, int]] = list(zip(sizes[:-1], sizes[1:]))
        parts = []
        for fin, fout in self.shapes:
            bound = 1.0 / math.sqrt(fin)
            parts.append((torch.rand(fin * fout, generator=g) * 2 - 1) * bound)
            parts.append((torch.rand(fout, generator=g) * 2 - 1) * bound)
        self.theta0 = torch.cat(parts).to(device)
        self.n_params = self.theta0.numel()
        self.x = images.to(device)
        self.y = labels.to(device)
        self.batch_idx = torch.randint(0, len(labels), (self.steps + 1, batch_size), generator=g).to(device)
        self.cache_key: str | None = None

    def init_params(self) -> torch.Tensor:
        return self.theta0.clone()

    def unflatten(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out, off = [], 0
        for fin, fout in self.shapes:
            w = theta[off : off + fin * fout].view(fin, fout)
            off += fin * fout
            b = theta[off : off + fout]
            off += fout
            out.append((w, b))
        return out

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layers = self.unflatten(theta)
        h = x
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                h = self.act(h)
        return h

    def loss(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        idx = self.batch_idx[min(int(t), self.steps)]
        return F.cross_entropy(self.logits(theta, self.x[idx]), self.y[idx]).reshape(1)

    def final_loss(self, theta: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(theta, self.x), self.y).reshape(1)

    def accuracy(self, theta: torch.Tensor) -> float:
        with torch.no_grad():
            return float((self.logits(theta, self.x).argmax(1) == self.y).float().mean())


class ConcatProblem(Problem):
    """Several problems optimised side by side as one: θ is their flat parameter vectors end to end and the
    per-instance losses are concatenated. The coordinatewise LSTM sees each coordinate alone, so this is exactly
    the same as running it on each problem separately (how meta-training takes a batch of MNIST optimizees)."""

    def __init__(self, parts: Sequence[Problem]) -> None:
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("ConcatProblem needs at least one problem")
        self.name = self.parts[0].name
        self.steps = self.parts[0].steps
        self.n_instances = sum(p.n_instances for p in self.parts)
        self.n_params = sum(p.n_params for p in self.parts)
        self._offsets = [0]
        for p in self.parts:
            self._offsets.append(self._offsets[-1] + p.n_params)

    def init_params(self) -> torch.Tensor:
        return torch.cat([p.init_params() for p in self.parts])

    def _split(self, theta: torch.Tensor) -> list[torch.Tensor]:
        return [theta[a:b] for a, b in zip(self._offsets[:-1], self._offsets[1:])]

    def loss(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        return torch.cat([p.loss(th, t) for p, th in zip(self.parts, self._split(theta))])

    def final_loss(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([p.final_loss(th) for p, th in zip(self.parts, self._split(theta))])


class TwoDProblem(Problem):
    """A 2-D function whose trajectories can be drawn on a contour map."""

    def __init__(
        self,
        name: str,
        fn: Callable[[torch.Tensor], torch.Tensor],
        start: tuple[float, float],
        optimum: tuple[float, float],
        bounds: tuple[float, float, float, float],
        steps: int = 100,
        device: Any = "cpu",
    ) -> None:
        self.name = name
        self.fn = fn
        self.n_instances, self.n_params, self.steps = 1, 2, int(steps)
        self.start = torch.tensor(start, dtype=torch.float32, device=device)
        self.optimum = optimum
        self.bounds = bounds

    def init_params(self) -> torch.Tensor:
        return self.start.clone()

    def loss(self, theta: torch.Tensor, t: int = 0) -> torch.Tensor:
        return self.fn(theta.view(1, 2))

    def grid(self, n: int = 160):
        """(xs, ys, Z) with Z[i, j] = f(xs[i], ys[j]) for the contour map (plain numpy arrays)."""
        x0, x1, y0, y1 = self.bounds
        xs = torch.linspace(x0, x1, n)
        ys = torch.linspace(y0, y1, n)
        X, Y = torch.meshgrid(xs, ys, indexing="ij")
        with torch.no_grad():
            Z = self.fn(torch.stack([X.reshape(-1), Y.reshape(-1)], 1)).reshape(n, n)
        return xs.numpy(), ys.numpy(), Z.numpy()


def valley2d(seed: int = 0, steps: int = 100, device: Any = "cpu") -> TwoDProblem:
    """A rotated, ill-conditioned quadratic ||S R(α)(θ − θ*)||² (condition number 100), seeded angle/optimum/start."""
    g = _gen(seed)
    alpha = float(torch.rand(1, generator=g)) * math.pi
    ca, sa = math.cos(alpha), math.sin(alpha)
    opt = (torch.rand(2, generator=g) * 2 - 1).tolist()
    ang = float(torch.rand(1, generator=g)) * 2 * math.pi
    start = (opt[0] + 2.5 * math.cos(ang), opt[1] + 2.5 * math.sin(ang))
    s1, s2 = 2.0, 0.2

    def fn(xy: torch.Tensor) -> torch.Tensor:
        dx, dy = xy[:, 0] - opt[0], xy[:, 1] - opt[1]
        u = ca * dx + sa * dy
        v = -sa * dx + ca * dy
        return (s1 * u) ** 2 + (s2 * v) ** 2

    cx, cy = (start[0] + opt[0]) / 2, (start[1] + opt[1]) / 2
    return TwoDProblem("valley2d", fn, start, tuple(opt), (cx - 3, cx + 3, cy - 3, cy + 3), steps, device)


def quad2d(seed: int = 0, steps: int = 100, device: Any = "cpu") -> TwoDProblem:
    """One 2-D member of the meta-training family: ||Wθ − y||², W (2×2) and y standard normal, θ0 ≈ 0."""
    q = QuadraticProblem(batch=1, dim=2, seed=seed, steps=steps)
    W, y = q.W[0].clone(), q.y[0].clone()
    start = tuple(q.theta0.tolist())
    try:
        opt = torch.linalg.solve(W, y).tolist()
    except RuntimeError:
        opt = [0.0, 0.0]
    if not all(math.isfinite(v) for v in opt):
        opt = [0.0, 0.0]

    def fn(xy: torch.Tensor) -> torch.Tensor:
        r = xy @ W.T.to(xy.dtype) - y.to(xy.dtype)
        return (r * r).sum(dim=1)

    xs = [start[0], opt[0]]
    ys = [start[1], opt[1]]
    half = max(1.0, 0.65 * max(max(xs) - min(xs), max(ys) - min(ys)))
    half = min(half, 20.0)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return TwoDProblem(
        "quad2d", fn, start, (opt[0], opt[1]), (cx - half, cx + half, cy - half, cy + half), steps, device
    )


def rosenbrock(seed: int = 0, steps: int = 100, device: Any = "cpu") -> TwoDProblem:
    """Rosenbrock's banana (1 − x)² + 100 (y − x²)², started at a seeded point left of the valley."""
    g = _gen(seed)
    start = (-1.5 + 0.5 * float(torch.rand(1, generator=g)), 1.5 + float(torch.rand(1, generator=g)))

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = xy[:, 0], xy[:, 1]
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    return TwoDProblem("rosenbrock", fn, start, (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0), steps, device)


_MLP_VARIANTS = {
    "mnist": dict(hidden=(20,), activation="sigmoid", steps=100, dataset="mnist"),
    "mnist-200steps": dict(hidden=(20,), activation="sigmoid", steps=200, dataset="mnist"),
    "mnist-40": dict(hidden=(40,), activation="sigmoid", steps=100, dataset="mnist"),
    "mnist-2layer": dict(hidden=(20, 20), activation="sigmoid", steps=100, dataset="mnist"),
    "mnist-relu": dict(hidden=(20,), activation="relu", steps=100, dataset="mnist"),
    "fashion": dict(hidden=(20,), activation="sigmoid", steps=100, dataset="fashion"),
    # MNIST at lower resolution (2x2 / 4x4 average pooling: 14x14 = 196 and 7x7 = 49 inputs): meta-training
    # variety for `train l2l --problem mnist-mix`, so the optimizer does not learn the 784-input net alone
    "mnist-14px": dict(hidden=(20,), activation="sigmoid", steps=100, dataset="mnist", pool=2),
    "mnist-7px": dict(hidden=(20,), activation="sigmoid", steps=100, dataset="mnist", pool=4),
}
# `train l2l --problem mnist-mix`: episode k meta-trains on MIX_VARIANTS[k % 4] (half of them at full resolution)
MIX_VARIANTS = ("mnist", "mnist-14px", "mnist", "mnist-7px")


def pooled(images: torch.Tensor, pool: int) -> torch.Tensor:
    """28x28 images (N, 784) average-pooled ``pool`` x ``pool``: (N, (28 // pool) ** 2)."""
    if pool <= 1:
        return images
    side = int(round(math.sqrt(images.shape[1])))
    return F.avg_pool2d(images.view(-1, 1, side, side), pool).flatten(1)


def make_problem(
    name: str, seed: int, split: str = "test", device: Any = "cpu", batch: int | None = None, steps: int | None = None
) -> Problem:
    """Build problem ``name`` from ``seed``. ``split`` selects the MNIST images ('train' for meta-training) or the
    style problems' content photos ('train', 'tune' or held-out)."""
    from .data import load_images

    if name == "quadratic":
        return QuadraticProblem(batch=batch or 128, seed=seed, steps=steps or 100, device=device)
    if name == "quad2d":
        return quad2d(seed, steps or 100, device)
    if name == "valley2d":
        return valley2d(seed, steps or 100, device)
    if name == "rosenbrock":
        return rosenbrock(seed, steps or 100, device)
    if name in STYLE_PROBLEMS:
        from .style import make_style_problem

        # images: 'train' -> meta-training photos, 'tune' -> the baselines' tuning photos, else held-out photos
        return make_style_problem(
            name, seed, split=split if split in ("train", "tune") else "test", device=device, steps=steps
        )
    if name in _MLP_VARIANTS:
        v = _MLP_VARIANTS[name]
        x, y = load_images(v["dataset"], split)
        x = pooled(x, int(v.get("pool", 1)))
        mlp = MLPProblem(
            x,
            y,
            hidden=v["hidden"],
            activation=v["activation"],
            steps=steps or v["steps"],
            seed=seed,
            device=device,
            name=name,
        )
        # names the run for evaluate.baseline_run's optional cache (deterministic: seed, images, steps)
        mlp.cache_key = f"{name}-{split}-{int(seed)}-{mlp.steps}-n{len(y)}"
        return mlp
    raise ValueError(f"unknown problem {name!r}")
