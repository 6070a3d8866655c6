"""CoDAE: the conditional dual auto-encoder for dark-shower anomaly detection (arXiv:2306.12955),
and the plain convolutional auto-encoder it is compared with.

Shapes (paper configuration, one channel of binary track occupancy):

    image x             (N, 1, 72, 58)      axes (phi, eta)
    large encoder       stride-2 stages 64, 128, 128, 256 (each + one residual block), instance
                        norm, leaky ReLU(0.2), grouped 3x3 convs (4 groups after the first stage),
                        1x1 conv -> z_e (N, 64, 5, 4)
    small encoder       conv + 3x3/2 max-pool stages 64, 128, 128, 256 (2 groups after the first),
                        dense -> z_m (N, 2): the anomaly score lives here
    decoder             at each of 4 resolutions: h <- h * conv3x3([z_m broadcast, x grid, y grid]),
                        then bilinear 2x upsample + conv + residual block (256, 128, 128, 64)
                        -> (N, 64, 80, 64) -> centre crop (72, 58) -> 1x1 conv -> logits
    output              sigmoid(logits): per-pixel occupancy probability

With these settings the model has 1,646,467 parameters, the count of the reference Keras model
(about 1.65 M). ``conditional=False`` gives the plain auto-encoder: no small encoder, no
conditioning. The models return *logits*; :meth:`CoDAE.reconstruct` applies the sigmoid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.config import ConfigValueError, check_model_size, check_range


@dataclass
class CoDAEConfig:
    """Every architectural setting; defaults are the paper's CoDAE."""
    image_shape: tuple[int, int] = (72, 58)     # (phi, eta) pixels
    in_channels: int = 1                        # 1: binary track occupancy; 3: energy images
    latent_channels: int = 64                   # z_e channels (5 x 4 x 64 latent)
    enc_filters: list[int] = field(default_factory=lambda: [64, 128, 128, 256])
    enc_depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    enc_groups: int = 4
    mask_filters: list[int] = field(default_factory=lambda: [64, 128, 128, 256])
    mask_groups: int = 2
    z_dim: int = 2                              # size of Z_m
    dec_filters: list[int] = field(default_factory=lambda: [256, 128, 128, 64])
    dec_depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    dec_groups: int = 4
    out_bias: float = -1.0                      # sparse images: start near empty (sigmoid(-1)=0.27)
    leaky_slope: float = 0.2                    # tf.nn.leaky_relu's default, as in the reference
    norm_eps: float = 1e-3                      # instance-norm epsilon of the reference
    conditional: bool = True                    # False: the plain auto-encoder baseline

    def validate(self) -> None:
        shape = list(self.image_shape) if isinstance(self.image_shape, (list, tuple)) else []
        if len(shape) != 2 or not all(isinstance(v, int) and 1 <= v <= 4096 for v in shape):
            raise ConfigValueError("image_shape", "must be two pixel counts from 1 to 4096, got "
                                                  f"{self.image_shape!r}")
        check_range(self, "in_channels", 1, 64)
        check_range(self, "latent_channels", 1, 4096)
        check_range(self, "z_dim", 1, 4096)
        for key in ("enc", "mask", "dec"):
            filters = getattr(self, f"{key}_filters")
            check_range(self, f"{key}_groups", 1, 4096)
            groups = getattr(self, f"{key}_groups")
            if not filters or not all(isinstance(f, int) and 1 <= f <= 4096 for f in filters):
                raise ConfigValueError(f"{key}_filters", "must be a list of channel counts from 1 "
                                                         f"to 4096, got {filters!r}")
            if any(f % groups for f in filters):
                raise ConfigValueError(f"{key}_groups", f"{groups} groups do not divide every "
                                                        f"{key}_filters entry {filters}")
        for key in ("enc", "dec"):
            depths, filters = getattr(self, f"{key}_depths"), getattr(self, f"{key}_filters")
            if len(depths) != len(filters) or not all(isinstance(d, int) and 0 <= d <= 64
                                                      for d in depths):
                raise ConfigValueError(f"{key}_depths", f"must be {len(filters)} block counts "
                                                        f"from 0 to 64, got {depths!r}")
        check_range(self, "leaky_slope", 0.0, 1.0)
        check_range(self, "norm_eps", 0.0, lo_open=True)
        check_model_size("enc_filters", self.n_parameters())

    def n_parameters(self) -> int:
        """An upper estimate of the parameters (convolutions, dense layer), for size bounds."""
        stages = [(f, d, self.enc_groups) for f, d in zip(self.enc_filters, self.enc_depths)]
        stages += [(f, 0, self.mask_groups) for f in self.mask_filters]
        stages += [(f, d, self.dec_groups) for f, d in zip(self.dec_filters, self.dec_depths)]
        n, cin = 0, self.in_channels
        for f, d, g in stages:
            n += 9 * (cin * f + 2 * d * f * f // g)
            cin = f
        h, w = _stage_sizes(*self.image_shape, len(self.mask_filters))[-1]
        return n + self.mask_filters[-1] * h * w * self.z_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CoDAEConfig:
        """A config from a dict, every value checked (:func:`jetfm.config.from_dict`); raises
        InputError naming the key."""
        from jetfm.config import from_dict

        d = dict(d) if isinstance(d, dict) else d
        if isinstance(d, dict) and isinstance(d.get("image_shape"), list):
            d["image_shape"] = tuple(d["image_shape"])
        return from_dict(cls, d)


def _he_init(conv: nn.Conv2d) -> nn.Conv2d:
    # Keras' he_uniform of the reference: U(+-sqrt(6 / fan_in)), zero bias
    nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class ConvNormAct(nn.Sequential):
    """3x3 conv ('same' padding, optional stride 2 and groups) -> instance norm -> leaky ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1, slope: float = 0.2,
                 eps: float = 1e-3):
        super().__init__(_he_init(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups)),
                         nn.InstanceNorm2d(cout, eps=eps, affine=True),
                         nn.LeakyReLU(slope))


class ResBlock(nn.Module):
    """x + conv(conv(x)): two grouped ConvNormAct at constant width."""

    def __init__(self, ch: int, groups: int, slope: float, eps: float):
        super().__init__()
        self.a = ConvNormAct(ch, ch, groups=groups, slope=slope, eps=eps)
        self.b = ConvNormAct(ch, ch, groups=groups, slope=slope, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


def _stage_sizes(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each of ``n`` stride-2 'same' stages (ceil division)."""
    out = []
    for _ in range(n):
        h, w = (h + 1) // 2, (w + 1) // 2
        out.append((h, w))
    return out


class ResEncoder(nn.Module):
    """The large residual encoder: (N, C, 72, 58) -> z_e (N, latent_channels, 5, 4)."""

    def __init__(self, cfg: CoDAEConfig):
        super().__init__()
        layers, cin = [], cfg.in_channels
        for j, (f, depth) in enumerate(zip(cfg.enc_filters, cfg.enc_depths)):
            layers.append(ConvNormAct(cin, f, stride=2, groups=cfg.enc_groups if j else 1,
                                      slope=cfg.leaky_slope, eps=cfg.norm_eps))
            layers += [ResBlock(f, cfg.enc_groups, cfg.leaky_slope, cfg.norm_eps)
                       for _ in range(depth)]
            cin = f
        self.body = nn.Sequential(*layers)
        self.latent = nn.Conv2d(cin, cfg.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent(self.body(x))


class MaskEncoder(nn.Module):
    """The small encoder: (N, C, 72, 58) -> Z_m (N, z_dim). Cheap enough for a trigger."""

    def __init__(self, cfg: CoDAEConfig):
        super().__init__()
        layers, cin = [], cfg.in_channels
        for i, f in enumerate(cfg.mask_filters):
            layers += [ConvNormAct(cin, f, groups=cfg.mask_groups if i else 1,
                                   slope=cfg.leaky_slope, eps=cfg.norm_eps),
                       nn.MaxPool2d(3, 2, 1)]
            cin = f
        self.body = nn.Sequential(*layers)
        h, w = _stage_sizes(*cfg.image_shape, len(cfg.mask_filters))[-1]
        self.dense = nn.Linear(cin * h * w, cfg.z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(x).flatten(1))


class SpatialConditioning(nn.Module):
    """h * conv3x3(concat(z broadcast to (H, W), x grid, y grid)): conditions a feature map on a
    vector, with the coordinate grid letting the scale vary over the image."""

    def __init__(self, z_dim: int, channels: int, size: tuple[int, int]):
        super().__init__()
        self.expand = nn.Conv2d(z_dim + 2, channels, 3, 1, 1)
        h, w = size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("grid", torch.stack([xx, yy])[None], persistent=False)  # (1,2,H,W)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        zmap = z[:, :, None, None].expand(-1, -1, *self.grid.shape[2:])
        cond = torch.cat([zmap, self.grid.expand(n, -1, -1, -1)], dim=1)
        return h * self.expand(cond)


class Decoder(nn.Module):
    """z_e (N, 64, 5, 4) [and Z_m (N, 2)] -> logits (N, C, 72, 58)."""

    def __init__(self, cfg: CoDAEConfig):
        super().__init__()
        n = len(cfg.dec_filters)
        sizes = _stage_sizes(*cfg.image_shape, len(cfg.enc_filters))
        h, w = sizes[-1]
        if (h << n) < cfg.image_shape[0] or (w << n) < cfg.image_shape[1]:
            raise ValueError(f"{n} decoder stages from {h}x{w} cannot cover {cfg.image_shape}")
        self.crop = cfg.image_shape
        self.cond = nn.ModuleList()
        self.up = nn.ModuleList()
        self.res = nn.ModuleList()
        cin = cfg.latent_channels
        for j, (f, depth) in enumerate(zip(cfg.dec_filters, cfg.dec_depths)):
            if cfg.conditional:
                self.cond.append(SpatialConditioning(cfg.z_dim, cin, (h << j, w << j)))
            self.up.append(ConvNormAct(cin, f, groups=cfg.dec_groups if j else 1,
                                       slope=cfg.leaky_slope, eps=cfg.norm_eps))
            self.res.append(nn.Sequential(*[ResBlock(f, cfg.dec_groups, cfg.leaky_slope,
                                                     cfg.norm_eps) for _ in range(depth)]))
            cin = f
        self.out = nn.Conv2d(cin, cfg.in_channels, 1)
        nn.init.constant_(self.out.bias, cfg.out_bias)

    def forward(self, z_e: torch.Tensor, z_m: torch.Tensor | None = None) -> torch.Tensor:
        h = z_e
        for j in range(len(self.up)):
            if len(self.cond):
                h = self.cond[j](h, z_m)
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = self.res[j](self.up[j](h))
        H, W = h.shape[2:]
        top, left = (H - self.crop[0]) // 2, (W - self.crop[1]) // 2
        h = h[:, :, top:top + self.crop[0], left:left + self.crop[1]]
        return self.out(h)


class CoDAE(nn.Module):
    """Conditional dual auto-encoder (``cfg.conditional``) or the plain auto-encoder.

    forward(x (N, C, 72, 58)) -> logits (N, C, 72, 58); ``z_m(x)`` runs the small encoder only.
    """

    def __init__(self, cfg: CoDAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or CoDAEConfig()
        self.encoder = ResEncoder(self.cfg)
        self.mask_encoder = MaskEncoder(self.cfg) if self.cfg.conditional else None
        self.decoder = Decoder(self.cfg)

    def z_m(self, x: torch.Tensor) -> torch.Tensor:
        """The 2-dimensional latent Z_m (N, z_dim) of the small encoder."""
        if self.mask_encoder is None:
            raise ValueError("the plain auto-encoder has no Z_m")
        return self.mask_encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z_m = self.mask_encoder(x) if self.mask_encoder is not None else None
        return self.decoder(self.encoder(x), z_m)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel probabilities (N, C, 72, 58) in [0, 1]."""
        return torch.sigmoid(self(x))


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
