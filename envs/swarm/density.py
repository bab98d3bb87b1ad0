"""Reference densities as weighted sample points ``nu = sum_j beta_j delta_{q_j}``.

D2OC represents the reference density by weighted samples (beta_j >= 0, sum beta_j = 1); the
authors draw the samples from Gaussian mixtures with uniform weights (their ``sp_gen_R2.m`` /
``rand_gauss.m``). Here a density comes from

- :func:`gmm_density`: a Gaussian mixture given by means, covariances and mixing weights;
- :func:`random_gmm_density`: a random mixture in the style of ``rand_gauss.m`` (means uniform with a 5 %
  margin, per-axis standard deviation ``0.008 L U + 0.004 L``, here scaled up so a few components cover the map);
- :func:`image_density`: a non-negative image (pixel value = density) such as those in ``assets/densities``.

All samples are clipped to the square domain ``[lo, hi]^2``. :class:`ReferenceDensity` validates its
input: no mass, negative or non-finite weights and mismatched shapes raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morl.assets import asset_path

__all__ = ["ReferenceDensity", "gmm_density", "random_gmm_density", "image_density", "load_density_image",
           "make_density", "ASSET_DIR", "write_asset_images", "DEMO_GMM"]

#: ``assets/densities`` at the project root.
ASSET_DIR = asset_path("densities")

#: The fixed four-component mixture of the ``"gmm"`` density, in units of the domain side.
DEMO_GMM = {
    "means": [[0.25, 0.30], [0.70, 0.25], [0.60, 0.72], [0.22, 0.78]],
    "stds": [[0.08, 0.06], [0.06, 0.10], [0.12, 0.07], [0.05, 0.05]],
    "mix": [0.30, 0.25, 0.30, 0.15],
}


@dataclass(frozen=True)
class ReferenceDensity:
    """Weighted samples of a reference density on the square domain ``[lo, hi]^2``.

    :param samples: ``(M, 2)`` sample positions.
    :param weights: ``(M,)`` non-negative weights; normalised to sum 1 (float64).
    :param domain: ``(lo, hi)``.
    :param name: a label.
    :raises ValueError: when there is no sample or no mass, a weight is negative or non-finite, or shapes mismatch.
    """

    samples: np.ndarray
    weights: np.ndarray
    domain: tuple[float, float] = (0.0, 100.0)
    name: str = "custom"

    def __post_init__(self):
        q = np.array(self.samples, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 2 or len(q) < 1:
            raise ValueError(f"density samples must have shape (M>=1, 2), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("density samples have non-finite coordinates")
        w = np.array(self.weights, dtype=np.float64)
        if w.shape != (len(q),):
            raise ValueError(f"density weights must have shape ({len(q)},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("density weights have non-finite entries")
        if np.any(w < 0):
            j = int(np.argmin(w))
            raise ValueError(f"density weights must be non-negative, got weights[{j}] = {w[j]:.6g}")
        total = float(w.sum())
        if not total > 0:
            raise ValueError("density has no mass (all weights are zero)")
        lo, hi = (float(v) for v in self.domain)
        if not hi > lo:
            raise ValueError(f"density domain must satisfy lo < hi, got {self.domain}")
        w = w / total
        q.setflags(write=False)
        w.setflags(write=False)
        object.__setattr__(self, "samples", q)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "domain", (lo, hi))

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def grid(self, size: int = 64) -> np.ndarray:
        """Mass per cell of a ``size x size`` grid over the domain (row ``i`` = x bin, column = y bin)."""
        lo, hi = self.domain
        h, _, _ = np.histogram2d(self.samples[:, 0], self.samples[:, 1], bins=size, range=[[lo, hi], [lo, hi]],
                                 weights=self.weights)
        return h


def _clip(points: np.ndarray, domain) -> np.ndarray:
    return np.clip(points, domain[0], domain[1])


def gmm_density(means, covs, mix, n_samples: int, domain=(0.0, 100.0), rng=None, name: str = "gmm") -> ReferenceDensity:
    """``n_samples`` uniform-weight samples of a Gaussian mixture, kept inside ``domain`` (rejection).

    :param means: ``(K, 2)`` component means.
    :param covs: ``(K, 2, 2)`` covariances.
    :param mix: ``(K,)`` non-negative mixing weights.
    """
    rng = np.random.default_rng(rng)
    means, covs, mix = np.asarray(means, float), np.asarray(covs, float), np.asarray(mix, float)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if means.ndim != 2 or means.shape[1] != 2 or covs.shape != (len(means), 2, 2) or mix.shape != (len(means),):
        raise ValueError(f"GMM shapes mismatch: means {means.shape}, covs {covs.shape}, mix {mix.shape}")
    if np.any(mix < 0) or not mix.sum() > 0:
        raise ValueError("GMM mixing weights must be non-negative with positive sum")
    lo, hi = domain
    out = np.empty((0, 2))
    for _ in range(100):  # rejection sampling of points outside the domain, as the authors drop them
        comp = rng.choice(len(mix), size=2 * n_samples, p=mix / mix.sum())
        z = rng.standard_normal((2 * n_samples, 2))
        chol = np.linalg.cholesky(covs)[comp]
        pts = means[comp] + np.einsum("kij,kj->ki", chol, z)
        pts = pts[np.all((pts >= lo) & (pts <= hi), axis=1)]
        out = np.concatenate([out, pts])
        if len(out) >= n_samples:
            break
    if len(out) < n_samples:
        raise ValueError("GMM has (almost) no mass inside the domain")
    return ReferenceDensity(out[:n_samples], np.full(n_samples, 1.0 / n_samples), (lo, hi), name)


def random_gmm_density(n_samples: int, domain=(0.0, 100.0), n_components: int = 8, rng=None,
                       name: str = "random_gmm") -> ReferenceDensity:
    """A random mixture: means uniform with a 5 % margin; per-axis std ``(0.008 L U + 0.004 L) * 4``.

    The factor 4 (not in ``rand_gauss.m``, which uses ~20 components of 20 samples) keeps a handful of
    components from collapsing to points on a 100 m map.
    """
    rng = np.random.default_rng(rng)
    lo, hi = domain
    side = hi - lo
    means = lo + 0.05 * side + 0.9 * side * rng.random((n_components, 2))
    stds = 4.0 * (0.008 * side * rng.random((n_components, 2)) + 0.004 * side)
    covs = np.stack([np.diag(s ** 2) for s in stds])
    mix = 0.5 + rng.random(n_components)
    return gmm_density(means, covs, mix, n_samples, domain, rng, name)


def load_density_image(name_or_path) -> np.ndarray:
    """A density image as a float array: a name in ``assets/densities`` (``.npy``) or a path (``.npy`` or image)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = ASSET_DIR / f"{name_or_path}.npy"
    if not path.exists():
        known = sorted(p.stem for p in ASSET_DIR.glob("*.npy"))
        raise ValueError(f"density image {str(name_or_path)!r} not found (assets: {', '.join(known)})")
    if path.suffix == ".npy":
        img = np.load(path)
    else:
        import matplotlib.image as mpimg

        img = mpimg.imread(path)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
    return np.asarray(img, dtype=np.float64)


def image_density(image, n_samples: int, domain=(0.0, 100.0), rng=None, name: str = "image") -> ReferenceDensity:
    """``n_samples`` uniform-weight samples with pixel probability proportional to the image value.

    Row 0 of the image is the top of the map (largest y); each sample is jittered uniformly in its pixel.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"density image must be 2-D, got shape {img.shape}")
    if not np.all(np.isfinite(img)) or np.any(img < 0):
        raise ValueError("density image must be finite and non-negative")
    if not img.sum() > 0:
        raise ValueError("density image has no mass (all pixels are zero)")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    rng = np.random.default_rng(rng)
    rows, cols = img.shape
    flat = rng.choice(img.size, size=n_samples, p=(img / img.sum()).ravel())
    r, c = np.divmod(flat, cols)
    lo, hi = domain
    u = (c + rng.random(n_samples)) / cols
    v = 1.0 - (r + rng.random(n_samples)) / rows
    pts = lo + (hi - lo) * np.stack([u, v], axis=1)
    return ReferenceDensity(_clip(pts, domain), np.full(n_samples, 1.0 / n_samples), (lo, hi), name)


def make_density(spec, n_samples: int = 2000, domain=(0.0, 100.0), seed: int = 0) -> ReferenceDensity:
    """A density from a spec.

    ``"gmm"`` (the fixed :data:`DEMO_GMM`), ``"random_gmm"``, ``"image:<asset name or path>"``, a mapping
    ``{"means", "covs", "mix"}`` or ``{"samples", "weights"}``, or a :class:`ReferenceDensity`.
    """
    if isinstance(spec, ReferenceDensity):
        return spec
    lo, hi = domain
    side = hi - lo
    if spec == "gmm":
        means = lo + side * np.asarray(DEMO_GMM["means"])
        covs = np.stack([np.diag((side * np.asarray(s)) ** 2) for s in DEMO_GMM["stds"]])
        return gmm_density(means, covs, DEMO_GMM["mix"], n_samples, domain, seed, "gmm")
    if spec == "random_gmm":
        return random_gmm_density(n_samples, domain, rng=seed)
    if isinstance(spec, str) and spec.startswith("image:"):
        name = spec.split(":", 1)[1]
        return image_density(load_density_image(name), n_samples, domain, seed, f"image:{Path(name).stem}")
    if isinstance(spec, dict):
        if {"samples", "weights"} <= set(spec):
            return ReferenceDensity(spec["samples"], spec["weights"], domain, spec.get("name", "custom"))
        if {"means", "covs", "mix"} <= set(spec):
            return gmm_density(spec["means"], spec["covs"], spec["mix"], n_samples, domain, seed,
                               spec.get("name", "gmm"))
        raise ValueError(f"density mapping needs samples+weights or means+covs+mix, got keys {sorted(spec)}")
    raise ValueError(f"unknown density {spec!r} "
                     "(use 'gmm', 'random_gmm', 'image:<name>', a mapping or ReferenceDensity)")


def write_asset_images(directory=ASSET_DIR, size: int = 64) -> list[Path]:
    """(Re)generate the small density images shipped in ``assets/densities`` (``ring.npy``, ``cross.npy``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    v, u = np.mgrid[0:size, 0:size] / (size - 1.0)  # row (top = 0), column
    x, y = u, 1.0 - v
    # ring: an annulus of radius 0.3 around the centre, heavier on its upper-right side
    r = np.hypot(x - 0.5, y - 0.5)
    ring = np.exp(-0.5 * ((r - 0.3) / 0.05) ** 2) * (1.0 + 0.8 * (x + y))
    # cross: two bars plus a small dense square in the lower-left corner
    cross = ((np.abs(x - 0.55) < 0.06) & (y > 0.2) & (y < 0.9)).astype(float)
    cross += 0.7 * ((np.abs(y - 0.6) < 0.05) & (x > 0.2) & (x < 0.9))
    cross += 2.0 * ((x > 0.08) & (x < 0.2) & (y > 0.08) & (y < 0.2))
    paths = []
    for name, img in (("ring", ring), ("cross", cross)):
        img = np.round(255 * img / img.max()).astype(np.uint8)
        path = directory / f"{name}.npy"
        np.save(path, img)
        paths.append(path)
    return paths
