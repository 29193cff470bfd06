"""Networks for the harness: CIFAR-style ResNet-18/34, a small MLP, and the papers' feature heads.

Every network maps an image batch x of shape (n, C, H, W) to features h of shape (n, d) on the unit
sphere, as the SCL papers assume (Kini et al. §2, "SCL requires normalized features, so we assume
||h_theta(x_i)|| = 1"; Gill et al. §2; Khosla et al. 2020):

    backbone:  x -> f(x) in R^p           (ResNet global-average-pooled output, or MLP output; both
                                           end in a ReLU, so f >= 0 entrywise)
    head:      f -> g = P(f)              (P = the 2-layer projector Linear-ReLU-Linear of Khosla et al.
                                           when projection=True; else a Linear layer p -> d, or the
                                           identity: see ``feature_layer`` below)
    relu:      g -> max(g, 0)             (Kini et al.'s "SCL+ReLU": ReLU on the output features
                                           before normalisation; puts h in the non-negative orthant)
    normalise: h = g / max(||g||, eps)    (unit rows; skipped with normalize=False, used only for plain
                                           CE, whose features are unnormalised in Koromilas Eq. 1)

``model(x)`` returns h; ``model.embed(x)`` returns (pre_projection f, h) so NCC accuracy can be
measured before and after the projector (Kini et al. Tab. 2).

``feature_layer`` (without a projector): "linear" puts a Linear p -> d after the backbone; "identity"
uses the backbone output itself (d = p: the penultimate features, as Koromilas et al.'s code feeds
NormFace/NTCE/NONL and CE); "auto" (default) is the identity when relu=True and d = p (a ReLU after
the backbone's own ReLU changes nothing) and linear otherwise. So relu=False really means features
that can be negative: with the identity head they would be the backbone's post-ReLU output, in the
non-negative orthant as with relu=True, and "SCL without ReLU" (Kini et al. Fig. 1) would silently
be SCL+ReLU. ``model.features_nonnegative`` records which case a model is in.

The ResNets are the CIFAR variant of He et al. (2016) used by Kini/Gill/Khosla: a 3x3 stride-1 stem
convolution and no max-pool, four stages of BasicBlocks with widths (w, 2w, 4w, 8w), w = 64 by
default, so the backbone output has p = 512 dimensions. ``width`` shrinks the network for CPU runs.
The input (channels, height, width) is configurable: 1x8x8 (scikit-learn digits), 1x28x28 (MNIST),
3x32x32 (CIFAR). torchvision is deliberately not used.

``norm`` (both the ResNets and the MLP) chooses the normalisation layer after each convolution / hidden
Linear layer (:func:`norm_layer`):

- ``batch`` (default, the papers' networks): BatchNorm. In train mode it normalises with the statistics
  of the batch it is called on and updates its running statistics; so the features of one sample depend
  on the other samples of the same forward call. Under ``--batching full`` with ``chunk_size`` < n
  (:func:`nctheory.harness.train.full_batch_backward`) each chunk is normalised with its own statistics,
  which differ from the full-batch statistics: the two-pass gradient is then the gradient of a
  different network function (per-chunk BatchNorm), NOT the full-batch gradient of the BatchNorm
  network, and the running statistics are updated once per chunk (pass 2) instead of once per step.
- ``group``: GroupNorm (Wu & He 2018): gcd(C, 32) groups of a C-channel convolution map (the ResNets), one
  group of all C units of a hidden Linear layer (the MLP: per-sample normalisation over the layer, i.e.
  LayerNorm with a per-unit affine map). Statistics per sample, so the network is batch-independent and
  the two-pass gradient is the exact full-batch gradient. A group holds (C / groups) x H x W values; a
  group of one value (C <= 32 on a 1 x 1 map: the last stage of a ResNet of width <= 4 on 8 x 8 digits)
  is normalised to 0 and the layer outputs its bias, so such a network is constant: use a wider one.
- ``frozen``: BatchNorm always in eval mode with fixed statistics (running mean 0, variance 1 at
  initialisation, or those of a loaded state dict; never updated): a per-channel affine map
  gamma (x - mu) / sqrt(var + eps) + beta with learned gamma, beta. Batch-independent, exact.
- ``none``: no normalisation layer (convolutions / Linear layers get a bias instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nctheory.errors import InputError
from nctheory.harness.factory import call_factory, is_factory_spec, resolve_factory

ARCHS = ("resnet18", "resnet34", "mlp")
FEATURE_LAYERS = ("auto", "linear", "identity")
NORMS = ("batch", "group", "frozen", "none")
BATCH_DEPENDENT_NORMS = ("batch",)  # norms whose output depends on the other samples of the forward call


class FrozenBatchNorm(nn.Module):
    """BatchNorm that always normalises with its stored statistics (eval mode), which never change.

    y = weight * (x - running_mean) / sqrt(running_var + eps) + bias per channel, for (N, C) and (N, C, H, W)
    inputs; weight and bias are trained, running_mean / running_var stay at their initial 0 / 1 (or a loaded
    state dict). Not a torch BatchNorm subclass, so SyncBatchNorm conversion leaves it alone."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def norm_layer(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation layer ``norm`` (module docstring) for ``channels`` channels of a (N, C, H, W)
    (dims=2) or (N, C) (dims=1) activation; ``none`` is the identity."""
    if norm == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, 32) if dims == 2 else 1, channels)
    if norm == "frozen":
        return FrozenBatchNorm(channels)
    if norm == "none":
        return nn.Identity()
    raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, each followed by the normalisation ``norm`` (BatchNorm in He et al. 2016), and an
    identity (or 1x1-conv) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch"):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.bn1 = norm_layer(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.bn2 = norm_layer(norm, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), norm_layer(norm, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem (stride 1), no max-pool, stages (w, 2w, 4w, 8w), global avg pool."""

    def __init__(self, blocks_per_stage, in_channels: int = 3, width: int = 64, norm: str = "batch"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none"),
                                  norm_layer(norm, width), nn.ReLU(inplace=True))
        layers, cin = [], width
        for s, nblocks in enumerate(blocks_per_stage):
            cout = width * 2 ** s
            for b in range(nblocks):
                layers.append(BasicBlock(cin, cout, stride=2 if (b == 0 and s > 0) else 1, norm=norm))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x):
        x = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class MLP(nn.Module):
    """Flatten, then `depth` blocks Linear-norm-ReLU of `hidden` units (Kini et al. E.3.4 uses 6 x 512 with
    BatchNorm); ``batchnorm=False`` is the older spelling of ``norm="none"``."""

    def __init__(self, in_features: int, hidden: int = 256, depth: int = 2, batchnorm: bool = True,
                 norm: str = "batch"):
        super().__init__()
        norm = norm if batchnorm else "none"
        layers, cin = [nn.Flatten()], in_features
        for _ in range(depth):
            layers.append(nn.Linear(cin, hidden, bias=norm == "none"))
            if norm != "none":
                layers.append(norm_layer(norm, hidden, dims=1))
            layers.append(nn.ReLU(inplace=True))
            cin = hidden
        self.net = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x):
        return self.net(x)


class SphereNet(nn.Module):
    """backbone -> optional projector -> optional ReLU -> unit-norm features (see module docstring).

    The final feature dimension d is ``feat_dim`` (a linear layer maps the backbone output to it when
    the two differ and there is no projector); with ``feat_dim=None`` it is the backbone's width,
    as in Kini et al. (d = 512 for ResNets, the "normalization layer" replaces the classifier).
    """

    def __init__(self, backbone: nn.Module, feat_dim: int | None = None, projection: bool = False,
                 relu: bool = False, normalize: bool = True, feature_layer: str = "auto"):
        super().__init__()
        self.backbone = backbone
        p = backbone.out_dim
        d = p if feat_dim is None else int(feat_dim)
        if feature_layer not in FEATURE_LAYERS:
            raise InputError(f"feature_layer must be one of {', '.join(FEATURE_LAYERS)}, got {feature_layer!r}")
        if feature_layer == "identity" and (projection or d != p):
            raise InputError(f"feature_layer identity uses the backbone output itself: it needs no projection "
                             f"and feat_dim equal to the backbone width {p} (got projection={bool(projection)}, "
                             f"feat_dim={d})")
        if projection:  # Khosla et al.: 2-layer non-linear MLP projector
            self.head = nn.Sequential(nn.Linear(p, p), nn.ReLU(inplace=True), nn.Linear(p, d))
        elif feature_layer == "identity" or (feature_layer == "auto" and relu and d == p):
            self.head = nn.Identity()
        else:
            self.head = nn.Linear(p, d)
        # the backbones here end in a ReLU: with the identity head the features are non-negative even without
        # relu; a backbone of your own (FactoryBackbone) is not assumed to
        self.features_nonnegative = bool(relu) or (isinstance(self.head, nn.Identity)
                                                    and getattr(backbone, "output_nonnegative", True))
        self.relu = bool(relu)
        self.normalize = bool(normalize)
        self.feat_dim = d

    def embed(self, x):
        f = self.backbone(x)
        g = self.head(f)
        if self.relu:
            g = F.relu(g)
        g = g if g.dtype == torch.float64 else g.float()  # float32 even under autocast; float64 stays float64
        if not self.normalize:  # plain CE (Koromilas Eq. 1) uses unnormalised features
            return f, g
        # normalise in float32 (or float64) even under autocast: ||h|| = 1 is what the bounds assume
        h = F.normalize(g, dim=1, eps=1e-12)
        return f, h

    def forward(self, x):
        return self.embed(x)[1]


class FactoryBackbone(nn.Module):
    """Your network (``--model package.module:factory``) as the backbone: its output, flattened after the
    batch dimension, is f(x) in R^p; the papers' head (projector / linear / identity, ReLU, normalisation)
    follows as for the built-in backbones. Its output is not assumed non-negative."""

    output_nonnegative = False

    def __init__(self, net: nn.Module, out_dim: int):
        super().__init__()
        self.net, self.out_dim = net, int(out_dim)

    def forward(self, x):
        return torch.flatten(self.net(x), 1)


def factory_backbone(spec: str, input_shape, num_classes: int | None = None) -> FactoryBackbone:
    """Call the model factory ``spec`` (harness.factory) and find its output width p with a forward pass of
    two zero images (eval mode, no gradient)."""
    net = call_factory(resolve_factory(spec, "model"), spec, "model", input_shape=tuple(input_shape),
                       num_classes=num_classes)
    if not isinstance(net, nn.Module):
        raise InputError(f"--model {spec} returned a {type(net).__name__}, not a torch.nn.Module")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise InputError(f"--model {spec} failed on a batch of shape {(2, *input_shape)}: "
                         f"{type(exc).__name__}: {exc}") from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 2:
        raise InputError(f"--model {spec} must return a tensor of features (batch, ...), got "
                         f"{type(out).__name__}{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}")
    return FactoryBackbone(net, int(out[0].numel()))


def build_model(arch: str, input_shape, *, width: int = 64, feat_dim: int | None = None,
                projection: bool = False, relu: bool = False, normalize: bool = True, mlp_hidden: int = 256,
                mlp_depth: int = 2, batchnorm: bool = True, feature_layer: str = "auto",
                num_classes: int | None = None, norm: str = "batch") -> SphereNet:
    """Build ``arch`` ("resnet18", "resnet34", "mlp", or your own "package.module:factory") for inputs of
    shape (C, H, W); ``norm`` is the normalisation layer of the built-in backbones (module docstring)."""
    if norm not in NORMS:
        raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise InputError(f"input_shape must be (channels, height, width), got {input_shape!r}") from None
    if min(c, h, w) < 1:
        raise InputError(f"input_shape must be positive, got {input_shape!r}")
    if is_factory_spec(arch):
        backbone = factory_backbone(arch, (c, h, w), num_classes)
    elif arch == "resnet18":
        if width < 1:
            raise InputError(f"width must be >= 1, got {width}")
        backbone = ResNet((2, 2, 2, 2), in_channels=c, width=width, norm=norm)
    elif arch == "resnet34":
        if width < 1:
            raise InputError(f"width must be >= 1, got {width}")
        backbone = ResNet((3, 4, 6, 3), in_channels=c, width=width, norm=norm)
    elif arch == "mlp":
        if mlp_hidden < 1 or mlp_depth < 1:
            raise InputError("mlp_hidden and mlp_depth must be >= 1")
        backbone = MLP(c * h * w, hidden=mlp_hidden, depth=mlp_depth, batchnorm=batchnorm, norm=norm)
    else:
        raise InputError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)} or package.module:factory")
    if feat_dim is not None and int(feat_dim) < 1:
        raise InputError(f"feat_dim must be >= 1, got {feat_dim}")
    return SphereNet(backbone, feat_dim=feat_dim, projection=projection, relu=relu, normalize=normalize,
                     feature_layer=feature_layer)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
