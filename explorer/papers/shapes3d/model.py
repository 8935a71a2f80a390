"""The 3D structure model: a DRAW-like sequential generator writing into a 3D canvas, an inference network
reading one 2D view, and the fixed differentiable projection (volume -> image) both are trained through.

Conventions (shared with data.py): a volume is a tensor (B, 1, D, H, W) spanning the cube [-1, 1]^3 with
D = z, H = y, W = x; world "up" is -y. A camera is an orthographic view given by azimuth and elevation in
degrees; its 3x3 matrix M has the camera's right, down and forward axes as columns, so a camera-frame point q
sits at world point M q. Rendering resamples the volume into the camera frame (trilinear, through
``affine_grid``/``grid_sample``) and composites along the forward axis by emission-absorption: each sample
absorbs a fraction ``alpha`` (its occupancy) of the light and emits a grey level that falls with depth
(near = bright). The image is therefore a depth-shaded silhouette with a black background; the same code makes
the training pictures (from a fine 64^3 occupancy grid) and the model's re-projections (from its 32^3 canvas),
and it is differentiable end to end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Known cameras (azimuth, elevation in degrees) in the canvas frame. The training cameras are axis-aligned
# (the input view looks along +z; then the sides, the back and the top), so projecting to them is an exact
# permutation of the volume's axes followed by compositing; other cameras resample trilinearly.
TRAIN_CAMERAS: list[list[float]] = [[0.0, 0.0], [90.0, 0.0], [180.0, 0.0], [270.0, 0.0], [0.0, 90.0]]
# Cameras never used in training: only for the "new views" error of the evaluation and for turntables.
NOVEL_CAMERAS: list[list[float]] = [[45.0, 30.0], [135.0, -20.0], [225.0, 45.0]]
# The larger rig adds four level cameras on the diagonals (never the novel cameras above); they constrain the
# shape between the axis views (a box turned 45 degrees looks like its axis-view hull from the axes alone).
# The four share one resampled copy of the volume (a 2D resampling of the horizontal slices), so a training
# step costs 1.1-1.4x one with the axis rig, not 4x (bench/shapes3d_step.py).
DIAGONAL_CAMERAS: list[list[float]] = [[45.0, 0.0], [135.0, 0.0], [225.0, 0.0], [315.0, 0.0]]
RIGS: dict[str, list[list[float]]] = {"axes": TRAIN_CAMERAS, "axes+diagonals": TRAIN_CAMERAS + DIAGONAL_CAMERAS}
SHADE = 0.7  # grey level = 1 - SHADE * depth (depth in [0, 1] along the ray)
_LOGIT_PAD = 30.0  # logits are shifted before resampling so that "outside the cube" means empty


def camera_matrix(azimuth: float, elevation: float) -> np.ndarray:
    """3x3 rotation whose columns are the camera's right, down and forward axes in world coordinates.

    (0, 0) is the identity: looking along +z with x to the right and y down. Positive elevation looks down
    from above (world up is -y).
    """
    a, e = math.radians(azimuth), math.radians(elevation)
    f = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    up = np.array([0.0, -1.0, 0.0])
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-6:  # looking straight down or up
        r = np.array([math.cos(a), 0.0, -math.sin(a)])
    r /= np.linalg.norm(r)
    u = np.cross(f, r)
    u /= np.linalg.norm(u)
    m = np.stack([r, u, f], axis=1)
    m[np.abs(m) < 1e-12] = 0.0
    return m


def camera_thetas(cameras: Sequence[Sequence[float]], dtype=torch.float32) -> torch.Tensor:
    """(K, 3, 4) affine matrices for ``affine_grid`` (camera frame -> world), one per (azimuth, elevation)."""
    th = np.zeros((len(cameras), 3, 4), np.float64)
    for k, (az, el) in enumerate(cameras):
        th[k, :, :3] = camera_matrix(az, el)
    return torch.tensor(th, dtype=dtype)


def _axis_permutation(m: np.ndarray):
    """For a signed permutation matrix: (dims to permute to, dims to flip) of a (B, C, D, H, W) volume."""
    if not np.allclose(np.abs(m), np.round(np.abs(m)), atol=1e-6) or not np.allclose(np.abs(m).sum(0), 1):
        return None
    tensor_dim = {0: 4, 1: 3, 2: 2}  # world axis x, y, z -> tensor dim W, H, D
    perm, flips = [0, 1], []
    for out_pos, j in zip((2, 3, 4), (2, 1, 0)):  # camera axes: depth (z), down (y), right (x)
        i = int(np.argmax(np.abs(m[:, j])))
        perm.append(tensor_dim[i])
        if m[i, j] < 0:
            flips.append(out_pos)
    return perm, flips


def composite(alpha: torch.Tensor, shade: float = SHADE) -> torch.Tensor:
    """Emission-absorption along dim 1 of (N, S, H, W) opacities in [0, 1] -> (N, H, W) grey image."""
    s = alpha.shape[1]
    alpha = alpha.clamp(0.0, 0.9999)
    trans = torch.cumprod(1.0 - alpha, dim=1)
    trans = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)  # light reaching each sample
    w = alpha * trans
    depth = (torch.arange(s, dtype=alpha.dtype, device=alpha.device) + 0.5) / s
    emit = (1.0 - shade * depth).view(1, s, 1, 1)
    return (w * emit).sum(1)


def _permute(volume: torch.Tensor, ap) -> torch.Tensor:
    """(B, C, S, S, S) seen by an axis-aligned camera: ``ap`` = (dims to permute to, dims to flip)."""
    perm, flips = ap
    v = volume.permute(*perm)
    return v.flip(flips) if flips else v


def to_camera(volume: torch.Tensor, theta: torch.Tensor, pad: float = 0.0) -> torch.Tensor:
    """Resample (B, C, S, S, S) into one camera's frame (depth along dim 2); exact for axis-aligned cameras.

    ``pad`` is the value outside the cube (for trilinear resampling)."""
    m = theta[:, :3].detach().cpu().double().numpy()
    ap = _axis_permutation(m)
    if ap is not None:
        return _permute(volume, ap)
    b, s = volume.shape[0], volume.shape[-1]
    th = theta.to(volume.device, volume.dtype).unsqueeze(0).expand(b, 3, 4)
    grid = F.affine_grid(th, [b, volume.shape[1], s, s, s], align_corners=False)
    return F.grid_sample(volume - pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad


def _composite_logs(log_a: torch.Tensor, log_t: torch.Tensor, shade: float) -> torch.Tensor:
    s = log_a.shape[1]
    log_trans = torch.cumsum(log_t, dim=1) - log_t  # light reaching each sample (exclusive product)
    w = torch.exp(log_a + log_trans)
    depth = (torch.arange(s, dtype=log_a.dtype, device=log_a.device) + 0.5) / s
    return torch.einsum("nshw,s->nhw", w, 1.0 - shade * depth)


def composite_logits(logits: torch.Tensor, shade: float = SHADE) -> torch.Tensor:
    """Same as :func:`composite` for occupancy logits, in log space (cheaper and stabler gradients)."""
    log_a = F.logsigmoid(logits)  # log alpha;  log(1 - alpha) = log alpha - logit
    return _composite_logs(log_a, log_a - logits, shade)


def _yaw_split(m: np.ndarray):
    """For a camera matrix m: (yaw, axis permutation of G^T m) when m = G P with G a turn about the vertical axis
    by ``yaw`` degrees (0 <= yaw < 90) and P a signed permutation; None for other (tilted) cameras.

    Cameras sharing a yaw see one resampled copy of the volume, each through an exact permutation: the
    diagonal cameras of a rig cost one (bilinear, slice-wise) resampling together, not one trilinear each."""
    ap = _axis_permutation(m)
    if ap is not None:
        return 0.0, ap
    f = m[:, 2]
    if abs(f[1]) > 1e-6:
        return None
    yaw = round(math.degrees(math.atan2(f[0], f[2])) % 90.0, 6)
    ap = _axis_permutation(camera_matrix(yaw, 0.0).T @ m)
    return None if ap is None else (yaw, ap)


def _yaw_frame(volume: torch.Tensor, yaw: float, pad: float) -> torch.Tensor:
    """The volume resampled into the frame turned by ``yaw`` degrees about the vertical axis."""
    if yaw == 0.0:
        return volume
    # A turn about y resamples every horizontal slice alike: one bilinear 2D resampling of the (z, x) planes
    # with the y slices as channels (the same samples as the trilinear to_camera, at a fraction of the cost).
    g = camera_matrix(yaw, 0.0)
    b, c, d, h, w = volume.shape
    th = (
        torch.tensor([[g[0, 0], g[0, 2], 0.0], [g[2, 0], g[2, 2], 0.0]], dtype=volume.dtype, device=volume.device)
        .unsqueeze(0)
        .expand(b, 2, 3)
    )
    planes = volume.permute(0, 1, 3, 2, 4).reshape(b, c * h, d, w) - pad  # (B, C*y, z, x)
    grid = F.affine_grid(th, [b, c * h, d, w], align_corners=False)
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad
    return out.view(b, c, h, d, w).permute(0, 1, 3, 2, 4)


class _AxisCompositor:
    """Emission-absorption images of occupancy logits (B, 1, S, S, S) along the volume's own axes: no copies of
    the volume, one cumulative sum per axis shared between opposite cameras."""

    def __init__(self, volume: torch.Tensor, shade: float) -> None:
        self.volume, self.shade = volume, shade
        la = F.logsigmoid(volume)
        self.log_a, self.log_t = la, la - volume  # log alpha, log (1 - alpha)
        self.cums: dict[int, torch.Tensor] = {}

    def __call__(self, ap) -> torch.Tensor:
        volume, perm, flips = self.volume, ap[0], ap[1]
        d = perm[2]
        if d not in self.cums:
            self.cums[d] = torch.cumsum(self.log_t, dim=d)
        c = self.cums[d]
        n = volume.shape[d]
        shape = [1] * 5
        shape[d] = n
        idx = (torch.arange(n, dtype=volume.dtype, device=volume.device) + 0.5) / n
        if 2 in flips:  # looking towards -axis: light enters at the end
            log_trans = c.narrow(d, n - 1, 1) - c
            depth = 1.0 - idx
        else:
            log_trans = c - self.log_t
            depth = idx
        w = torch.exp(self.log_a + log_trans)
        img = (w * (1.0 - self.shade * depth).view(shape)).sum(d)[:, 0]  # (B, a, b), remaining dims in order
        rest = [x for x in (2, 3, 4) if x != d]
        img = img.permute(0, 1 + rest.index(perm[3]), 1 + rest.index(perm[4]))
        fl = [{3: 1, 4: 2}[f] for f in flips if f != 2]
        return img.flip(fl) if fl else img


def project(
    volume: torch.Tensor, thetas: torch.Tensor, logits: bool = False, out_size: int | None = None, shade: float = SHADE
) -> torch.Tensor:
    """Render volumes (B, 1, S, S, S) from K cameras (thetas (K, 3, 4)) -> images (B, K, out, out).

    ``logits=True``: the volume holds occupancy logits (resampled, then squashed: sharper edges); otherwise
    occupancies in [0, 1]. ``out_size`` < S average-pools the S x S image (anti-aliasing).
    """
    imgs = []
    frames: dict[float, _AxisCompositor] = {}
    for k in range(thetas.shape[0]):
        split = _yaw_split(thetas[k, :, :3].detach().cpu().double().numpy()) if logits else None
        if split is not None:
            # Exact: the (possibly turned) volume composited along the axis the camera looks down, then the
            # small 2D image transposed/flipped into the camera's frame.
            yaw, ap = split
            if yaw not in frames:
                frames[yaw] = _AxisCompositor(_yaw_frame(volume, yaw, -_LOGIT_PAD), shade)
            img = frames[yaw](ap)
        else:
            v = to_camera(volume, thetas[k], pad=-_LOGIT_PAD if logits else 0.0)[:, 0]
            img = composite_logits(v, shade) if logits else composite(v, shade)
        if out_size is not None and out_size != img.shape[-1]:
            img = F.adaptive_avg_pool2d(img.unsqueeze(1), out_size)[:, 0]
        imgs.append(img)
    return torch.stack(imgs, 1)


class ImageEncoder(nn.Module):
    """A small CNN: (B, 1, 32, 32) picture -> feature vector."""

    def __init__(self, image_size: int, feat: int) -> None:
        super().__init__()
        ch = [1, 32, 64, 128]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1), nn.ELU()]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(128 * (image_size // 8) ** 2, feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.fc(self.conv(x).flatten(1)))


def silhouettes(logits: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """Max-projection silhouettes (B, K, S, S) of occupancy logits (B, 1, S, S, S): the most occupied voxel
    along each ray (as in Perspective Transformer Nets). Exact permutation for axis-aligned cameras."""
    occ = torch.sigmoid(logits)
    out, frames = [], {}
    for k in range(thetas.shape[0]):
        split = _yaw_split(thetas[k, :, :3].detach().cpu().double().numpy())
        if split is not None:  # cameras sharing a yaw share one resampling
            yaw, ap = split
            if yaw not in frames:
                frames[yaw] = _yaw_frame(occ, yaw, 0.0)
            v = _permute(frames[yaw], ap)[:, 0]
        else:
            v = to_camera(occ, thetas[k])[:, 0]
        out.append(v.amax(dim=1))
    return torch.stack(out, 1)


def tent_filters(center: torch.Tensor, stride: torch.Tensor, patch: int, res: int) -> torch.Tensor:
    """(B, res, patch) linear-interpolation weights placing ``patch`` points spaced ``stride`` around
    ``center`` (world units, shape (B,)) on a grid of ``res`` voxel centres in [-1, 1]."""
    x = ((torch.arange(res, dtype=center.dtype, device=center.device) + 0.5) / res * 2.0 - 1.0).view(1, res, 1)
    a = (torch.arange(patch, dtype=center.dtype, device=center.device) - (patch - 1) / 2.0).view(1, 1, patch)
    mu = center.view(-1, 1, 1) + a * stride.view(-1, 1, 1)
    return torch.relu(1.0 - (x - mu).abs() / stride.view(-1, 1, 1))


def axis_angle_matrix(r: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle vectors (radians) -> (B, 3, 3) rotation matrices (Rodrigues; smooth at zero)."""
    theta = torch.sqrt((r * r).sum(1, keepdim=True) + 1e-12)
    k = r / theta
    zero = torch.zeros_like(k[:, 0])
    kx, ky, kz = k.unbind(1)
    big_k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], 1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(big_k)
    s, c = torch.sin(theta).view(-1, 1, 1), torch.cos(theta).view(-1, 1, 1)
    return eye + s * big_k + (1.0 - c) * (big_k @ big_k)


def place_patch(patch: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, rot: torch.Tensor, res: int):
    """The volumetric spatial transformer: patches (B, P, P, P) in (z, y, x) order placed into (B, 1, R, R, R)
    canvases by ``affine_grid``/``grid_sample`` (trilinear, zero outside the patch).

    The patch spans [-1, 1]^3 in its own frame; a canvas point p (world x, y, z) reads the patch at
    u = diag(1 / scale) R^T (p - shift). With R = I this is exactly the separable scale + shift writer (the
    same trilinear tents)."""
    b = patch.shape[0]
    inv = rot.transpose(1, 2) / scale.unsqueeze(2)  # rows of R^T divided by the scale of that patch axis
    theta = torch.cat([inv, -(inv @ shift.unsqueeze(2))], 2)  # (B, 3, 4)
    grid = F.affine_grid(theta, [b, 1, res, res, res], align_corners=False)
    return F.grid_sample(patch.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class VolumeWriter(nn.Module):
    """write(h): a P^3 patch of logits (an MLP of h) placed into the R^3 canvas by a separable
    volumetric attention (3D spatial transformer restricted to per-axis scale and translation, trilinear
    kernels). Initialised to cover the whole canvas; the model learns where to zoom in."""

    def __init__(self, hidden: int, patch: int, res: int, kind: str = "mlp", rotation: bool = False) -> None:
        super().__init__()
        self.res, self.patch, self.kind, self.rotation = res, patch, kind, bool(rotation)
        if kind == "conv":  # h -> (P/2)^3 x 16 -> transposed 3D conv -> P^3 x 8 -> 3D conv -> P^3
            self.hid = nn.Linear(hidden, 16 * (patch // 2) ** 3)
            self.up = nn.ConvTranspose3d(16, 8, 4, 2, 1)
            self.out = nn.Conv3d(8, 1, 3, padding=1)
            self.fc = None
        else:
            self.hid = nn.Linear(hidden, 2 * hidden)
            self.fc = nn.Linear(2 * hidden, patch**3)
        if self.fc is not None:
            nn.init.normal_(self.fc.weight, std=0.01)
            nn.init.zeros_(self.fc.bias)
        self.where = nn.Linear(hidden, 6)
        nn.init.zeros_(self.where.weight)
        with torch.no_grad():
            self.where.bias.copy_(torch.tensor([3.0, 3.0, 3.0, 0.0, 0.0, 0.0]))
        # The full 3D spatial transformer (``rotation``): an axis-angle rotation of the patch per step, zero at
        # initialisation, so a new writer starts as the scale + shift one (and can start from its weights).
        self.turn = nn.Linear(hidden, 3) if self.rotation else None
        if self.turn is not None:
            nn.init.zeros_(self.turn.weight)
            nn.init.zeros_(self.turn.bias)

    def forward(self, h: torch.Tensor):
        b, p, r = h.shape[0], self.patch, self.res
        if self.kind == "conv":
            q = p // 2
            patch = self.out(F.elu(self.up(F.elu(self.hid(h)).view(b, 16, q, q, q)))).view(b, p, p, p)
        else:
            patch = self.fc(F.elu(self.hid(h))).view(b, p, p, p)  # (z, y, x)
        w = self.where(h)
        scale = 0.3 + 0.7 * torch.sigmoid(w[:, :3])  # (x, y, z) extent as a fraction of the cube
        shift = torch.tanh(w[:, 3:]) * (1.0 - scale)  # keep the patch inside the cube
        if self.turn is not None:
            rot = axis_angle_matrix(self.turn(h))
            out = place_patch(patch, scale, shift, rot, r)
            return out, torch.cat([scale, shift, rot.flatten(1)], 1)
        stride = scale * 2.0 / p
        fx, fy, fz = (tent_filters(shift[:, i], stride[:, i], p, r) for i in range(3))
        out = torch.einsum("bzc,bcyx->bzyx", fz, patch.reshape(b, p, p * p).view(b, p, p, p))
        out = torch.einsum("byc,bzcx->bzyx", fy, out)
        out = torch.einsum("bxc,bzyc->bzyx", fx, out)
        return out.unsqueeze(1), torch.cat([scale, shift], 1)


class Shapes3D(nn.Module):
    """Conditional sequential generative model of volumes with an inference network from one view.

    Generative: z_t ~ N(0, I); h_t = LSTM(h_{t-1}, [z_t, e(c), f(v)]); canvas_t = canvas_{t-1} + write(h_t);
    p(view_k | canvas_T) = Bernoulli(project(canvas_T, camera_k)) for every training camera k.
    Inference: q(z_t | image, e(c), h_{t-1}) from an LSTM reading the input view's CNN features.
    The context is, as in the paper, any of: nothing, a class (e(c); index ``n_classes`` = none) and a 2D view
    (its CNN features f(v); zeros = none). Class and view dropout in training make one model unconditional,
    class-conditional and view-conditional; single-view inference uses the view as context and the posterior
    mean latents.
    """

    def __init__(
        self,
        class_names: Sequence[str] = ("box", "sphere", "cylinder", "cone", "torus"),
        res: int = 32,
        image_size: int = 32,
        steps: int = 6,
        hidden: int = 256,
        z_dim: int = 16,
        patch: int = 16,
        feat: int = 256,
        ctx_dim: int = 16,
        cameras: Sequence[Sequence[float]] = TRAIN_CAMERAS,
        input_view: int = 0,
        view_context: bool = True,
        writer: str = "mlp",
        writer_rotation: bool = False,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.n_classes = len(self.class_names)
        self.res, self.image_size, self.steps = res, image_size, steps
        self.hidden, self.z_dim, self.patch, self.feat = hidden, z_dim, patch, feat
        self.ctx_dim = ctx_dim
        self.cameras = [list(map(float, c)) for c in cameras]
        self.input_view = input_view
        self.view_context = bool(view_context)
        self.writer_kind = writer
        self.writer_rotation = bool(writer_rotation)
        self.encoder = ImageEncoder(image_size, feat)
        self.context = nn.Embedding(self.n_classes + 1, ctx_dim)
        self.enc_rnn = nn.LSTMCell(feat + hidden + ctx_dim, hidden)
        self.q_params = nn.Linear(hidden, 2 * z_dim)
        self.dec_rnn = nn.LSTMCell(z_dim + ctx_dim + (feat if self.view_context else 0), hidden)
        self.writer = VolumeWriter(hidden, patch, res, writer, rotation=self.writer_rotation)
        self.canvas0 = nn.Parameter(torch.tensor(-3.0))
        self.register_buffer("thetas", camera_thetas(self.cameras), persistent=False)

    def config(self) -> dict[str, Any]:
        return dict(
            class_names=self.class_names,
            res=self.res,
            image_size=self.image_size,
            steps=self.steps,
            hidden=self.hidden,
            z_dim=self.z_dim,
            patch=self.patch,
            feat=self.feat,
            ctx_dim=self.ctx_dim,
            cameras=self.cameras,
            input_view=self.input_view,
            view_context=self.view_context,
            writer=self.writer_kind,
            **({"writer_rotation": True} if self.writer_rotation else {}),
        )

    # ------------------------------------------------------------------------------------------ helpers
    def _ctx(self, labels: torch.Tensor | None, b: int, device) -> torch.Tensor:
        if labels is None:
            labels = torch.full((b,), self.n_classes, dtype=torch.long, device=device)
        return self.context(labels.to(device).long())

    def _run(
        self,
        b: int,
        device,
        ctx: torch.Tensor,
        feat: torch.Tensor | None,
        sample: bool,
        temperature: float = 1.0,
        keep_canvases: bool = False,
        view_ctx: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        h_dec = c_dec = torch.zeros(b, self.hidden, device=device)
        h_enc = c_enc = torch.zeros(b, self.hidden, device=device)
        canvas = self.canvas0.expand(b, 1, self.res, self.res, self.res)
        kls, canvases, wheres = [], [], []
        for _ in range(self.steps):
            if feat is not None:
                h_enc, c_enc = self.enc_rnn(torch.cat([feat, h_dec, ctx], 1), (h_enc, c_enc))
                mu, logvar = self.q_params(h_enc).chunk(2, dim=1)
                logvar = logvar.clamp(-10.0, 6.0)
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
                kls.append(0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1))
            else:
                z = torch.randn(b, self.z_dim, device=device) * temperature
            dec_in = [z, ctx]
            if self.view_context:
                dec_in.append(view_ctx if view_ctx is not None else torch.zeros(b, self.feat, device=device))
            h_dec, c_dec = self.dec_rnn(torch.cat(dec_in, 1), (h_dec, c_dec))
            delta, where = self.writer(h_dec)
            canvas = canvas + delta
            wheres.append(where)
            if keep_canvases:
                canvases.append(canvas.detach())
        out: dict[str, Any] = {"logits": canvas, "where": torch.stack(wheres, 1)}
        if kls:
            out["kl"] = torch.stack(kls, 1)
        if keep_canvases:
            out["canvases"] = torch.stack(canvases, 1)
        return out

    # ------------------------------------------------------------------------------------------- API
    def forward(
        self,
        image: torch.Tensor,
        labels: torch.Tensor | None = None,
        sample: bool = True,
        keep_canvases: bool = False,
        view_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Infer a volume from input pictures (B, H, W) in [0, 1]. Returns logits (B,1,R,R,R) and kl (B,T).

        ``view_mask`` (B,) of 0/1: which items get the picture as generative context (default: all)."""
        b = image.shape[0]
        feat = self.encoder(image.unsqueeze(1))
        view_ctx = feat if view_mask is None else feat * view_mask.view(b, 1).to(feat.dtype)
        return self._run(
            b,
            image.device,
            self._ctx(labels, b, image.device),
            feat,
            sample,
            keep_canvases=keep_canvases,
            view_ctx=view_ctx,
        )

    def render(self, logits: torch.Tensor, thetas: torch.Tensor | None = None) -> torch.Tensor:
        """The fixed projection of canvases to every training camera (or to ``thetas``): (B, K, H, W)."""
        th = self.thetas if thetas is None else thetas
        return project(logits, th, logits=True, out_size=self.image_size)

    @torch.no_grad()
    def sample_prior(
        self, n: int, label: int | None = None, temperature: float = 1.0, keep_canvases: bool = False, device=None
    ) -> dict[str, Any]:
        """New volumes from the prior; ``label`` None = unconditional."""
        device = device or self.canvas0.device
        labels = None if label is None else torch.full((n,), int(label), dtype=torch.long, device=device)
        return self._run(n, device, self._ctx(labels, n, device), None, True, temperature, keep_canvases)


def build(config: dict[str, Any]) -> Shapes3D:
    return Shapes3D(**config)


def image_nll(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood of grey targets in [0, 1], summed over pixels and views -> (B,)."""
    p = pred.clamp(1e-4, 1.0 - 1e-4)
    return -(target * torch.log(p) + (1.0 - target) * torch.log1p(-p)).flatten(1).sum(1)


def iou(pred: Any, target: Any) -> Any:
    """Volumetric IoU of boolean volumes; over the last three axes, so batches give one value per item.

    Two empty volumes count as a perfect match (1.0).
    """
    if isinstance(pred, torch.Tensor):
        p, t = pred.bool(), target.bool()
        inter = (p & t).flatten(-3).sum(-1).double()
        union = (p | t).flatten(-3).sum(-1).double()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    inter = np.logical_and(p, t).reshape(*p.shape[:-3], -1).sum(-1).astype(np.float64)
    union = np.logical_or(p, t).reshape(*p.shape[:-3], -1).sum(-1).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def solidify(occupied: np.ndarray) -> np.ndarray:
    """Fill enclosed cavities of boolean volumes (..., R, R, R).

    Pictures only ever see an object's outer surface, so the inside of a closed surface is unobservable and
    the model is free to leave it hollow; a solid reading fills it (as the ground truth is filled).
    """
    from scipy import ndimage

    occ = np.asarray(occupied, bool)
    flat = occ.reshape(-1, *occ.shape[-3:])
    out = np.stack([ndimage.binary_fill_holes(v) for v in flat]) if len(flat) else flat
    return out.reshape(occ.shape)


def visual_hull(image: torch.Tensor, theta: torch.Tensor, res: int, threshold: float = 0.1) -> torch.Tensor:
    """Baseline: the single view's silhouette extruded along the viewing rays -> bool (B, R, R, R).

    ``image`` (B, H, W), ``theta`` (3, 4) the camera of that view. A voxel is filled when its centre
    projects inside the silhouette.
    """
    b = image.shape[0]
    lin = (torch.arange(res, dtype=torch.float32, device=image.device) + 0.5) / res * 2.0 - 1.0
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    p = torch.stack([x, y, z], -1).reshape(-1, 3)  # world points (x, y, z)
    m = theta[:, :3].to(image.device, torch.float32)
    q = p @ m  # camera coordinates = M^T p
    grid = q[:, :2].view(1, 1, -1, 2).expand(b, 1, -1, 2)
    sil = (image > threshold).float().unsqueeze(1)
    v = F.grid_sample(sil, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return v.view(b, res, res, res) > 0.5


# ------------------------------------------------------------------------------------------- read-out
@dataclass(frozen=True)
class Readout:
    """How a checkpoint's occupancy is read from one picture: the level a voxel counts as occupied above, and
    the steps of :func:`read_out` (a mirrored second look, carving to the picture's silhouette, carving to the depth
    a rendered picture shows). ``eval --record`` chooses them on validation shapes and stores them in the
    checkpoint's metrics; a checkpoint without them is read by its network alone at 0.5. ``network_level``: the
    network alone's own best level, at which it is reported beside the read-out."""

    level: float = 0.5
    mirror: bool = False
    carve: bool = False
    network_level: float = 0.5
    depth: bool = False

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any] | None) -> Readout:
        m = metrics or {}
        steps = m.get("iou_readout") or {}
        return cls(
            float(m.get("iou_level") or 0.5),
            bool(steps.get("mirror")),
            bool(steps.get("carve")),
            float(m.get("iou_level_network") or 0.5),
            bool(steps.get("depth")),
        )

    @property
    def network_only(self) -> bool:
        return not (self.mirror or self.carve or self.depth)

    def read(
        self,
        model: Shapes3D,
        image: torch.Tensor,
        labels: torch.Tensor | None,
        rendered: bool,
        sample: bool = False,
        keep_canvases: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:func:`read_out` with these steps; the depth carving only for pictures the renderer drew (``rendered``:
        a photo's grey levels are not depth)."""
        return read_out(
            model,
            image,
            labels,
            mirror=self.mirror,
            carve=self.carve,
            sample=sample,
            keep_canvases=keep_canvases,
            depth=self.depth and rendered,
        )

    def describe(self) -> str:
        carved = [w for w, on in (("the picture's silhouette", self.carve), ("the depth it shows", self.depth)) if on]
        steps = (["mirror-averaged"] if self.mirror else []) + (["carved to " + " and ".join(carved)] if carved else [])
        return (" and ".join(steps) + ", " if steps else "") + f"occupancy level {self.level:g}"


def mirror_dim(theta: torch.Tensor) -> int | None:
    """The volume axis (1 = z, 2 = y, 3 = x of a (B, R, R, R) volume) that a left-right flip of the picture from
    camera ``theta`` mirrors, or None when the camera's right axis is not along a volume axis (then a flipped
    picture is the picture of a shape that is not a voxel permutation of this one). The renderer is orthographic
    and has no left or right, so the flipped picture is exactly the picture of the mirrored shape."""
    right = theta[:, 0].detach().cpu().double()  # the picture's x axis in world (x, y, z)
    k = int(right.abs().argmax())
    if abs(float(right[k].abs()) - 1.0) > 1e-6:
        return None
    return 3 - k  # world x -> W (3), y -> H (2), z -> D (1)


@torch.no_grad()
def read_out(
    model: Shapes3D,
    image: torch.Tensor,
    labels: torch.Tensor | None,
    mirror: bool = False,
    carve: bool = False,
    sample: bool = False,
    keep_canvases: bool = False,
    depth: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Occupancy probabilities (B, R, R, R) inferred from input pictures (B, H, W), and the model's output.

    * ``mirror``: the mean of the inference from the picture and, mirrored back, from the picture flipped left to
      right (an ensemble over the renderer's one exact symmetry; skipped for a camera without it);
    * ``carve``: voxels whose centre projects outside the picture's silhouette are emptied (they would show in it);
    * ``depth``: for a picture drawn by the renderer only, the depth its grey levels show (:func:`depth_carve`).
    All use only the input picture. The output dict is the plain forward pass (its canvases, ``where``)."""
    out = model(image, labels, sample=sample, keep_canvases=keep_canvases)
    probs = torch.sigmoid(out["logits"][:, 0])
    theta = model.thetas[model.input_view]
    dim = mirror_dim(theta) if mirror else None
    if dim is not None:
        flipped = model(image.flip(-1), labels, sample=sample)["logits"][:, 0]
        probs = 0.5 * (probs + torch.sigmoid(flipped).flip(dim))
    if carve:
        probs = probs * visual_hull(image, theta, probs.shape[-1]).to(probs.dtype)
    if depth:
        probs = depth_carve(probs, image, theta)
    return probs, out


def _unpermute(volume: torch.Tensor, ap) -> torch.Tensor:
    """The inverse of :func:`_permute`: an axis-aligned camera's frame back to the world's."""
    perm, flips = ap
    v = volume.flip(flips) if flips else volume
    return v.permute(*[perm.index(d) for d in range(5)])


def from_camera(volume: torch.Tensor, theta: torch.Tensor) -> torch.Tensor | None:
    """The inverse of :func:`to_camera` for an axis-aligned camera: (B, C, D, H, W) in its frame -> the world's;
    None for any other camera."""
    ap = _axis_permutation(theta[:, :3].detach().cpu().double().numpy())
    return None if ap is None else _unpermute(volume, ap)


def picture_depth(image: torch.Tensor, res: int, shade: float = SHADE) -> torch.Tensor:
    """The voxel index along each ray of the first surface the renderer drew: it shades a surface at depth d (0..1
    along the ray) with grey 1 - shade * d, so d = (1 - grey) / shade. (B, H, W) float (not rounded)."""
    return (1.0 - image) / shade * res - 0.5


def depth_carve(probs: torch.Tensor, image: torch.Tensor, theta: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Read the depth the input picture shows (:func:`picture_depth`): along each trusted ray, the voxels in front
    of the first surface are emptied (they would have been drawn instead) and the first surface's voxel is filled.

    Only for a picture drawn by the renderer (a photo's brightness is not depth), from an axis-aligned camera, at
    the volume's resolution (each pixel is then one ray of voxels); otherwise ``probs`` come back unchanged.
    Trusted rays: a pixel the shape covers only in part looks deeper than its surface is, so the rays trusted are
    the pixels whose four neighbours are in the silhouette too; and every silhouette pixel when the whole picture
    shows whole voxels (every depth is the front of one of the volume's voxels, as for a shape voxelised at the
    volume's resolution: then no pixel is covered in part)."""
    b, r = probs.shape[0], probs.shape[-1]
    ap = _axis_permutation(theta[:, :3].detach().cpu().double().numpy())
    if image.shape[-2:] != (r, r) or ap is None:
        return probs
    depth = picture_depth(image, r)
    sil = image > threshold
    p = F.pad(sil.float(), (1, 1, 1, 1)) > 0.5
    trusted = sil & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    # the renderer draws at twice the volume's resolution: a voxel's front lies a quarter voxel before its centre
    # row; 0.12 is above half a grey level's step in depth (res / (shade * 255) = 0.18 voxel at 32)
    whole = (depth + 0.25 - torch.round(depth + 0.25)).abs() < 0.12
    exact = (whole | ~sil).flatten(1).all(1).view(b, 1, 1)
    trusted = torch.where(exact, sil, trusted).unsqueeze(1)
    first = torch.round(depth).clamp(0, r).unsqueeze(1)
    k = torch.arange(r, device=probs.device, dtype=first.dtype).view(1, r, 1, 1)
    cam = _permute(probs.unsqueeze(1), ap)[:, 0]  # (B, D, H, W) in the camera's frame: depth along D
    cam = cam.masked_fill((k < first) & trusted, 0.0).masked_fill((k == first) & trusted, 1.0)
    return _unpermute(cam.unsqueeze(1), ap)[:, 0]


def probs_to_logits(probs: torch.Tensor) -> torch.Tensor:
    """Logits of occupancy probabilities, bounded (an emptied voxel becomes a very low logit) for rendering."""
    p = probs.clamp(1e-6, 1.0 - 1e-6)
    return torch.log(p) - torch.log1p(-p)
