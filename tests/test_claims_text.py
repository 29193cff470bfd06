"""Claim texts that are built from what a check measured: their builders, fed results that differ from the
committed run, state only what those results show (nctheory/claims/koromilas2026.py)."""


def _thm41_result(counts, excess=0.01):
    return {"counts": list(counts), "nc_excess": excess, "nc3_min_cosine": 0.99, "delta_etf_means": 0.02}


def test_thm4_1_text_follows_the_findings():
    from nctheory.claims.koromilas2026 import thm41_outside_text

    low = [{"loss": "normface", "K": 3, "d": 1, "excess": 0.3, "closed_form_at_nc": 0.1,
            "method": "exact (all sign patterns)"}]
    full = thm41_outside_text({l: _thm41_result((2, 1, 1)) for l in ("normface", "ntce", "nonl")},
                              [((2, 1), "normface", True), ((3, 1), "ntce", True)], low, 6)
    assert "all three losses" in full["evidence"] and "all keep NC+ETF optimal" in full["evidence"]
    assert "K = 2 imbalanced counts checked" in full["statement"] and "d < K-1" in full["statement"]
    # only two losses fail, a K = 2 case is not NC-optimal, and the low-d solver reached the NC value
    part = thm41_outside_text({"normface": _thm41_result((3, 1)), "ntce": _thm41_result((2, 1, 1))},
                              [((3, 1), "normface", False), ((2, 1), "ntce", True)],
                              [dict(low[0], excess=0.0)], 6)
    assert "all three losses" not in part["evidence"]
    assert "For nonl no imbalanced counterexample was found" in part["evidence"]
    assert "do not all keep NC+ETF optimal" in part["evidence"] and "[3, 1]" in part["evidence"]
    assert "keep NC + ETF optimal" not in part["statement"] and "nonl no imbalanced" in part["statement"]
    assert "d < K-1" not in part["statement"] and "reached the NC value" in part["evidence"]
    assert part["counterexample"]["counts"] == [3, 1] and part["counterexample"]["losses"] == ["normface"]


def test_table3_text_is_built_from_the_mismatches():
    from nctheory.claims.koromilas2026 import TABLE3_STATED, table3_text

    vals = {K: {"erank_intra": 0.0, "erank_inter": K - 1.0, "erank_weights": K - 1.0, "align_weight_class": 0.0,
                "align_weight_instance": 0.0, "mir": 1.0, "hdr": 0.3, "mir_formula": 1.0} for K in (10, 100)}
    ev, corr, cex = table3_text(vals, {"hdr": {10: 0.3, 100: 0.3}}, {10: 0.9, 100: 0.9}, 0.0)
    assert "HDR = 0.3000 (K=10), 0.3000 (K=100)" in ev and "Intra ER = 0.0" in ev and "MIR = 1.0" in ev
    assert "MIR" not in ev.split("Not as stated")[1] and "Intra ER is undefined" not in ev
    assert "HDR = 0.3000/0.3000 (not 0.0)" in corr and "MIR = 1.0" in corr and "Intra ER = 0.0" in corr
    assert cex["metric"] == "hdr" and cex["stated"] == TABLE3_STATED["hdr"]
