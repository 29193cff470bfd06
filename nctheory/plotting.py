"""Pictures shared by the command line and the harness (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def gram_heatmap(ax, G, title: str | None = None, normalise: bool = True, annotate_up_to: int = 10):
    """Heatmap of a class-mean Gram matrix as in Kini et al. Fig. 1: G / max|G| (normalise=True) on a
    diverging map fixed to [-1, 1], so 0 (orthogonal) is white and an OF is a clean diagonal; matrices
    up to ``annotate_up_to`` classes get their entries printed. Returns the image for a colorbar."""
    G = np.asarray(G, dtype=np.float64)
    if normalise:
        G = G / max(np.abs(G).max(), 1e-300)
    im = ax.imshow(G, cmap="RdBu_r", vmin=-1, vmax=1)
    k = G.shape[0]
    if k <= annotate_up_to:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{G[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(G[i, j]) > 0.6 else "black")
    ax.set_xticks(range(k)) if k <= 20 else None
    ax.set_yticks(range(k)) if k <= 20 else None
    if title:
        ax.set_title(title, fontsize=8)
    return im
