"""Neural art as an optimizee (paper sec. 3.4): optimise an image's pixels for a style-transfer loss.

Feature network: no pretrained VGG can be downloaded here, so the features are those of a fixed network with
RANDOM weights (random convolutional features give usable style statistics: Ustyuzhaninov et al. 2016, He et al.
2016). Three conv-ReLU-average-pool stages with several filter sizes (3, 5 and 7 pixels) drawn once from a fixed
seed and STORED in ``resources/l2l/style/features.safetensors`` (and copied into every style checkpoint), so the
loss never depends on torch's random generator across versions. Loss (all terms normalised so typical values are
O(1)): content = relative squared error of stage-2 maps to the content image's; style = mean over the three
stages of the relative squared error of the Gram matrices to the style image's; a total-variation term; and a
penalty on pixels outside [0, 1]. θ = the image's pixels (unconstrained, flattened; shown clamped to [0, 1]),
starting from the content image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .problems import Problem

FEATURE_SEED = 28_2016  # issue 28, the paper's year
# (input channels, [(filters, kernel size), ...]) per stage: the stage's maps are the concatenation
FEATURE_STAGES: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = (
    (3, ((16, 3), (16, 5), (16, 7))),
    (48, ((48, 3), (32, 5))),
    (80, ((96, 3),)),
)
CONTENT_STAGE = 1
# chosen by looking at Adam's results (bench/l2l_style.py grid): the style must be recognisable, the photo too;
# scaled so that the loss of the content image itself is about 1
LOSS_WEIGHTS = {"content": 0.05, "style": 1.0, "tv": 0.0025, "range": 0.5}
PIXEL_MEAN = 0.45
PIXEL_SCALE = 0.25
FEATURES_FILE = "features.safetensors"


def make_feature_weights(seed: int = FEATURE_SEED) -> dict[str, torch.Tensor]:
    """Draw the random filters (He-normal, zero-mean per filter, small uniform biases): only ever run to write
    the bundled file (`python -m explorer.papers.l2l.style`); the problems read the file."""
    g = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for i, (cin, convs) in enumerate(FEATURE_STAGES):
        for j, (cout, k) in enumerate(convs):
            w = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            out[f"s{i}.c{j}.weight"] = w.contiguous()
            out[f"s{i}.c{j}.bias"] = (torch.rand(cout, generator=g) - 0.5) * 0.2
    return out


def features_path() -> Path:
    from .style_data import style_dir

    return style_dir() / FEATURES_FILE


@lru_cache(maxsize=1)
def _bundled_weights() -> dict[str, torch.Tensor]:
    from explorer.core.checkpoints import load_checkpoint
    from explorer.core.errors import CheckpointError

    p = features_path()
    if not p.exists():
        raise CheckpointError(f"the style feature network {p.name} is missing from {p.parent}")
    return load_checkpoint(p).state_dict


def feature_weights() -> dict[str, torch.Tensor]:
    """The fixed random filters (from the bundled file)."""
    return _bundled_weights()


class FeatureNet:
    """The fixed random network: ``maps(x)`` returns each stage's maps for images x (B, 3, H, W) in [0, 1]."""

    def __init__(self, weights: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        w = weights if weights is not None else feature_weights()
        self.stages = [
            [(w[f"s{i}.c{j}.weight"].to(device), w[f"s{i}.c{j}.bias"].to(device), k) for j, (_, k) in enumerate(convs)]
            for i, (_, convs) in enumerate(FEATURE_STAGES)
        ]

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - PIXEL_MEAN) / PIXEL_SCALE
        out = []
        for i, convs in enumerate(self.stages):
            h = torch.cat([F.conv2d(h, w, b, padding=k // 2) for w, b, k in convs], dim=1).relu()
            out.append(h)
            if i < len(self.stages) - 1:
                h = F.avg_pool2d(h, 2)
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), normalised by the number of positions (resolution-independent)."""
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return torch.bmm(m, m.transpose(1, 2)) / (h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, per image (B,)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return dx + dy


class StyleLoss:
    """The style-transfer loss of images x (B, 3, S, S) against one content and one style image."""

    def __init__(
        self,
        content: torch.Tensor,
        style: torch.Tensor,
        net: FeatureNet | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.net = net or FeatureNet(device=content.device)
        self.w = dict(LOSS_WEIGHTS)
        self.w.update(weights or {})
        with torch.no_grad():
            cm = self.net.maps(content.unsqueeze(0))
            sm = self.net.maps(style.unsqueeze(0))
            self.content_maps = cm[CONTENT_STAGE]
            self.content_norm = self.content_maps.pow(2).mean().clamp_min(1e-8)
            self.grams = [gram(m) for m in sm]
            self.gram_norms = [g.pow(2).sum().clamp_min(1e-8) for g in self.grams]
            # TV of the content image: the term is relative to it (1 = as busy as the photo)
            self.tv_norm = total_variation(content.unsqueeze(0)).clamp_min(1e-4)[0]

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.net.maps(x)
        content = (maps[CONTENT_STAGE] - self.content_maps).pow(2).mean(dim=(1, 2, 3)) / self.content_norm
        style = torch.stack(
            [(gram(m) - g).pow(2).sum(dim=(1, 2)) / n for m, g, n in zip(maps, self.grams, self.gram_norms)]
        ).mean(dim=0)
        tv = total_variation(x) / self.tv_norm
        rng = (F.relu(x - 1).pow(2) + F.relu(-x).pow(2)).mean(dim=(1, 2, 3))
        return {"content": content, "style": style, "tv": tv, "range": rng}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t = self.terms(x)
        w = self.w
        return w["content"] * t["content"] + w["style"] * t["style"] + w["tv"] * t["tv"] + w["range"] * t["range"]


class StyleProblem(Problem):
    """Style one content image: θ = its pixels, flattened (3·S·S); one instance; the loss does not depend on t."""

    def __init__(
        self,
        content: torch.Tensor,
        style: torch.Tensor,
        steps: int = 100,
        name: str = "style",
        net: FeatureNet | None = None,
        label: str = "",
    ) -> None:
        self.name = name
        self.steps = int(steps)
        self.n_instances = 1
        self.size = int(content.shape[-1])
        self.content = content
        self.style = style
        self.label = label
        self.n_params = content.numel()
        self.objective = StyleLoss(content, style, net)
        self.cache_key: str | None = None

    def image(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.view(1, 3, self.size, self.size)

    def init_params(self) -> torch.Tensor:
        return self.content.reshape(-1).clone()

    def loss(self, theta: torch.Tensor, t: int = 0) -> torch.Tensor:
        return self.objective(self.image(theta))

    def terms(self, theta: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            return {k: float(v[0]) for k, v in self.objective.terms(self.image(theta)).items()}

    def picture(self, theta: torch.Tensor):
        """The image as uint8 (S, S, 3) numpy pixels (clamped)."""
        x = self.image(theta.detach())[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return (x * 255 + 0.5).astype("uint8")


FEATURE_PREFIX = "features."


def checkpoint_extras() -> tuple[dict[str, torch.Tensor], str]:
    """What a style checkpoint stores besides the LSTM: the feature network's tensors (prefixed) and a note of the
    images it was meta-trained on."""
    from .style_data import TRAIN_STYLES

    feats = {FEATURE_PREFIX + k: v for k, v in feature_weights().items()}
    note = (
        f"64x64 centre crops of the BSDS500 train_ photos (research images, not shipped) styled as "
        f"{', '.join(TRAIN_STYLES)} (GIMP pattern, gimp-data-extras, GPL-2+); features: fixed random filters "
        f"(seed {FEATURE_SEED}, stored here under '{FEATURE_PREFIX}*'), no pretrained network"
    )
    return feats, note


def split_checkpoint(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The LSTM's tensors of a style checkpoint; refuses one whose feature network is not the bundled one."""
    from explorer.core.errors import CheckpointError

    feats = {k[len(FEATURE_PREFIX) :]: v for k, v in state.items() if k.startswith(FEATURE_PREFIX)}
    if feats:
        own = feature_weights()
        if set(feats) != set(own) or any(
            feats[k].shape != own[k].shape or not torch.equal(feats[k], own[k]) for k in own
        ):
            raise CheckpointError(f"{name}: was meta-trained with other feature-network weights than the bundled ones")
    return {k: v for k, v in state.items() if not k.startswith(FEATURE_PREFIX)}


# the problem variants: (content split, styles, size); the meta-training distribution is "style" on 'train'
STYLE_VARIANTS: dict[str, dict[str, Any]] = {
    "style": {"size": 64, "styles": "train", "steps": 100},
    "style-128": {"size": 128, "styles": "train", "steps": 100},
    "style-newstyle": {"size": 64, "styles": "held_out", "steps": 100},
}


def make_style_problem(
    name: str, seed: int, split: str = "test", device: Any = "cpu", steps: int | None = None, size: int | None = None
) -> StyleProblem:
    """Variant ``name`` with content photo number ``seed`` of ``split`` ('train', 'tune', 'test'); the style is
    the meta-training one, or (style-newstyle) one of the held-out styles picked by the seed."""
    from .style_data import HELD_OUT_STYLES, TRAIN_STYLES, content_image, style_image

    v = STYLE_VARIANTS[name]
    s = int(size or v["size"])
    styles = TRAIN_STYLES if v["styles"] == "train" else HELD_OUT_STYLES
    style_name = styles[int(seed) % len(styles)]
    # photo index: distinct seeds give distinct photos in each split (the seed bases are far apart)
    content = content_image(split, int(seed), s).to(device)
    problem = StyleProblem(
        content,
        style_image(style_name, s).to(device),
        steps=steps or int(v["steps"]),
        name=name,
        net=_net(str(device)),
        label=f"photo {int(seed)} ({split}) in style {style_name}",
    )
    # names the deterministic problem (for the evaluation's optional run cache)
    problem.cache_key = f"{name}-{split}-{int(seed)}-{s}-{problem.steps}-{_loss_tag()}"
    return problem


def _loss_tag() -> str:
    import hashlib

    text = repr((FEATURE_SEED, FEATURE_STAGES, CONTENT_STAGE, sorted(LOSS_WEIGHTS.items()), PIXEL_MEAN, PIXEL_SCALE))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


@lru_cache(maxsize=4)
def _net(device: str) -> FeatureNet:
    return FeatureNet(device=device)


if __name__ == "__main__":  # write the bundled random filters (once; committed)
    from explorer.core.checkpoints import save_checkpoint

    save_checkpoint(
        features_path(),
        make_feature_weights(),
        paper="l2l",
        model_config={"stages": [list(map(list, c)) for _, c in FEATURE_STAGES], "seed": FEATURE_SEED},
        data={"name": "random filters (He-normal, zero mean per filter), no training"},
    )
    print(f"wrote {features_path()}")
