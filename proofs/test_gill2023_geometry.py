"""Executable theorem: Gill et al. 2023 Fig. 3 geometries (nctheory/claims/gill2023_geometry.py)."""

from nctheory.claims import assert_claim


def test_gill2023_fig3_geometries():
    assert_claim("gill2023.fig3_geometries")
