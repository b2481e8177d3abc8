"""Digits Fréchet Distance (DFD): the paper's Table-2 comparison made with what ships here.

The paper scores generated images with the Fréchet Inception Distance, eq. (24):
    ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}).
We use the same formula but in the feature space of a small digits classifier trained on the
training split of scikit-learn's digits (penultimate layer, 32 ReLU features) and shipped with
the package. This is **not** FID: the numbers are not comparable with the paper's Table 2, only
between methods scored the same way here (same classifier, same reference set, same n).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lsdebm.config import Config, get_preset
from lsdebm.errors import InputError
from lsdebm.nn.blocks import conv, pool

METRIC_NAME = "Digits Fréchet Distance (DFD)"


def classifier_config(size: int = 16) -> Config:
    """Config of the digits classifier: grid ``size``, channels (16, 32), ``latent_dim`` = feature size 32."""
    return get_preset("default").replace(preset=f"teach-classifier-digits{size}", **{
        "model.spatial_dims": 2, "model.grid": size, "model.spacing": 1.0, "model.channels": (16, 32),
        "model.latent_dim": 32, "train.lr": 2e-3, "train.batch_size": 64, "train.epochs": 30})


class DigitsClassifier(nn.Module):
    """conv-ReLU-pool x2, Linear to ``latent_dim`` features (ReLU), Linear to 10 classes."""

    kind = "digits_classifier"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        ch = m.channels
        layers: list[nn.Module] = [conv(2, 1, ch[0]), nn.ReLU()]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [pool(2), conv(2, cin, cout), nn.ReLU()]
        layers += [pool(2), nn.Flatten(), nn.Linear(ch[-1] * (m.grid // 2 ** len(ch)) ** 2, m.latent_dim), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(m.latent_dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _as_batch(model: DigitsClassifier, images: np.ndarray) -> torch.Tensor:
    images = np.asarray(images, dtype=np.float32)
    g = model.cfg.model.grid
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (g, g):
        raise InputError(f"images of shape {images.shape} do not match the classifier's {g}x{g} grid")
    return torch.as_tensor(images)[:, None]


def classifier_features(model: DigitsClassifier, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Penultimate-layer features (N, latent_dim) of images (N, H, W) in [0, 1], float64."""
    x = _as_batch(model, images)
    with torch.no_grad():
        feats = [model.features(chunk) for chunk in x.split(batch)]
    return torch.cat(feats).double().numpy()


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (via eigh)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Eq. (24): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) for two Gaussians.

    Tr (S1 S2)^{1/2} is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^{1/2} S2 S1^{1/2} (same eigenvalues as S1 S2), which stays exact when the
    covariances are singular (dead ReLU features, fewer samples than features).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    root1 = _psd_sqrt(np.atleast_2d(sigma1))
    middle = root1 @ np.atleast_2d(sigma2) @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(np.atleast_2d(sigma1)) + np.trace(np.atleast_2d(sigma2))
                     - 2.0 * tr_covmean, 0.0))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(features) < 2:
        raise InputError(f"need at least 2 images for a Fréchet distance, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def digits_frechet_distance(model: DigitsClassifier, images_a: np.ndarray, images_b: np.ndarray) -> float:
    """DFD between two image sets (N, H, W) in [0, 1] in the classifier's feature space."""
    return frechet_distance(*feature_stats(classifier_features(model, images_a)),
                            *feature_stats(classifier_features(model, images_b)))


@dataclass
class ClassifierResult:
    model: DigitsClassifier
    test_accuracy: float
    seconds: float


def train_classifier(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                     test_labels: np.ndarray, seed: int = 0, cfg: Config | None = None) -> ClassifierResult:
    """Train the classifier (Adam, cross-entropy, random +-1 pixel shifts) and report test accuracy."""
    cfg = cfg or classifier_config(train_images.shape[-1])
    torch.manual_seed(seed)
    model = DigitsClassifier(cfg)
    x, y = _as_batch(model, train_images), torch.as_tensor(train_labels, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    bs = cfg.train.batch_size
    for _ in range(cfg.train.epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
            loss = F.cross_entropy(model(torch.roll(x[idx], (dy, dx), dims=(2, 3))), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(_as_batch(model, test_images)).argmax(1).numpy()
    return ClassifierResult(model, float((pred == np.asarray(test_labels)).mean()), time.perf_counter() - start)
