"""The papers' key empirical claims, judged from the runs recorded in experiments/results (kind "empirical").

Each check reads the recorded per-epoch metrics (CSV) or final summaries (JSON) of the runs described in
experiments/RESULTS.md, applies a criterion stated in its evidence, and states the scale of the runs. By the
verdict rule (nctheory.claims.registry) a run smaller than the paper's is no counterexample: a criterion
that holds gives "confirmed" at the recorded scale, one that does not gives "unchecked".

Scale of every recorded run: CPU (2 cores), the scikit-learn digits set (8x8 images) instead of MNIST /
CIFAR, a 3-layer MLP (256 units) or the CIFAR-style ResNet-18 at width 16 (0.70 M parameters instead of
11.2 M), 100-500 epochs instead of the papers' 350-2000.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from nctheory.claims.registry import Budget, Verdict, cite, claim

RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results"
NETS = {"rn16": "ResNet-18 width 16", "mlp": "MLP"}


def series(run_dir: str, name: str, column: str) -> list[tuple[int, float]]:
    """(epoch, value) for every recorded epoch of ``column`` in experiments/results/<run_dir>/<name>_metrics.csv."""
    with open(RESULTS / run_dir / f"{name}_metrics.csv", newline="") as f:
        return [(int(r["epoch"]), float(r[column])) for r in csv.DictReader(f) if r.get(column) not in (None, "")]


def final_metrics(run_dir: str, name: str) -> dict:
    return json.loads((RESULTS / run_dir / f"{name}_summary.json").read_text())["final"]


def _missing(dirs) -> Verdict | None:
    gone = [d for d in dirs if not (RESULTS / d).is_dir()]
    if gone:
        return Verdict("unchecked", f"the recorded runs {gone} are not in experiments/results of this tree")
    return None


# ------------------------------------------------------------------------------------ Kini Fig. 3
FIG3_RUNS = {"rn16": "kini_fig3_rn16_cpu", "mlp": "kini_fig3_cpu"}


@claim("kini2023.fig3",
       source=cite("kini2023", "§4.1, Fig. 3 and App. E.4.1", "Eq. (3)",
                   "the bound with e^{-1/tau}, tau = 0.1, of the duplicated counts"),
       hypotheses=["full-batch SCL (one step per epoch) with a ReLU before normalisation, tau = 0.1, SGD lr 0.1, "
                   "momentum 0.9; STEP imbalance R = 1, 10, 100; vertical-flip batch duplication",
                   "the paper: ResNet-18 on n = 1000 MNIST images; recorded here: experiments/results "
                   "kini_fig3_rn16_cpu (ResNet-18 width 16, 500 epochs) and kini_fig3_cpu (MLP, 200 epochs), digits, "
                   "n = 1000 / 550 / 505"],
       statement="The full-batch SCL loss converges to Thm 1's lower bound as training progresses ('remarkable "
                 "convergence of the loss to the lower bound').",
       expected="confirmed", kind="empirical")
def check_kini_fig3(budget: Budget) -> Verdict:
    if (m := _missing(FIG3_RUNS.values())) is not None:
        return m
    rows, ok = [], True
    for net, d in FIG3_RUNS.items():
        for R in (1, 10, 100):
            ex = series(d, f"R{R}", "excess")
            bound = series(d, f"R{R}", "bound")[-1][1]
            mid = ex[len(ex) // 2][1]
            row = {"net": net, "R": R, "epochs": ex[-1][0], "final_excess_over_bound": ex[-1][1] / bound,
                   "min_excess": min(v for _, v in ex), "excess_mid": mid, "excess_final": ex[-1][1]}
            row["ok"] = row["min_excess"] >= 0 and row["final_excess_over_bound"] < 1e-3 and ex[-1][1] < mid
            ok &= row["ok"]
            rows.append(row)
    ev = ("Criterion: for every R and network the loss never goes below the bound (a theorem for ReLU features), ends "
          "within 0.1% of it, and its excess is still falling over the second half of the run. Recorded: " +
          "; ".join(f"{NETS[r['net']]} R = {r['R']} ({r['epochs']} epochs): excess/bound {100 * r['final_excess_over_bound']:.4f}%, "
                    f"min excess {r['min_excess']:.3g}, excess {r['excess_mid']:.3g} at mid-run -> {r['excess_final']:.3g}"
                    for r in rows) +
          ". Scale: digits (8x8), n = 1000 / 550 / 505 as in the paper's n = 1000 at R = 1, ResNet-18 at width 16 and an "
          "MLP, CPU, 500 / 200 epochs (the paper: ResNet-18, MNIST, 2000 epochs). The loss approaching the bound says "
          "little about the geometry at this scale: Delta to OF is still 0.11-0.38 at the end (experiments/RESULTS.md).")
    return Verdict("confirmed" if ok else "unchecked", ev + ("" if ok else " The criterion does not hold for every run."),
                   {"runs": rows})


# ------------------------------------------------------------------------------------ Kini Fig. 6
FIG6_RUNS = {"rn16": "kini_fig6_rn16_cpu", "mlp": "kini_fig6_mlp_cpu"}
SCHEMES = ("fixed", "reshuffle", "fixed_binding")


@claim("kini2023.fig6",
       source=cite("kini2023", "§5.2, Fig. 6 and its paragraph; App. E.5, Fig. 17"),
       hypotheses=["SCL + ReLU, tau = 0.1, batch 128, STEP imbalance R = 10 and 100, three schemes: fixed partition, "
                   "reshuffling every epoch, fixed partition + batch-binding",
                   "the paper: ResNet-18 on CIFAR-10; recorded here: experiments/results kini_fig6_rn16_cpu (ResNet-18 "
                   "width 16) and kini_fig6_mlp_cpu (MLP), digits, 200 epochs, the same batches for both networks"],
       statement=("Batch-binding gives 'consistently fast convergence' to the OF, faster than reshuffling and than the "
                  "fixed partition, which does not converge, 'especially with large imbalance ratios'."),
       expected="unchecked", kind="empirical")
def check_kini_fig6(budget: Budget) -> Verdict:
    if (m := _missing(FIG6_RUNS.values())) is not None:
        return m
    rows = []
    for net, d in FIG6_RUNS.items():
        for R in (10, 100):
            s = {sch: dict(series(d, f"R{R}_{sch}", "delta_to_of")) for sch in SCHEMES}
            epochs = sorted(e for e in s["fixed_binding"] if e >= 50)
            lowest = [e for e in epochs if s["fixed_binding"][e] <= min(s["fixed"][e], s["reshuffle"][e])]
            last = epochs[-1]
            rows.append({"net": net, "R": R, "epochs_from_50": len(epochs), "binding_lowest_at": len(lowest),
                         "final": {sch: s[sch][last] for sch in SCHEMES},
                         "not_lowest_first": next((e for e in epochs if e not in lowest), None)})
    holds = [r for r in rows if r["binding_lowest_at"] == r["epochs_from_50"]]
    ev = ("Criterion: binding has the smallest Delta to OF of the three schemes at every evaluated epoch from 50 on, for "
          "each R and network. Recorded: " +
          "; ".join(f"{NETS[r['net']]} R = {r['R']}: binding lowest at {r['binding_lowest_at']} of {r['epochs_from_50']} "
                    f"evaluations" + (f" (first not at epoch {r['not_lowest_first']})" if r["not_lowest_first"] else "") +
                    ", final Delta " + ", ".join(f"{sch} {v:.3f}" for sch, v in r["final"].items()) for r in rows) +
          ". Scale: digits, 6 batches of 128 images per epoch, ResNet-18 at width 16 and an MLP, CPU, 200 epochs (the "
          "paper: CIFAR-10, ResNet-18).")
    if len(holds) == len(rows):
        return Verdict("confirmed", ev, {"runs": rows})
    where = ", ".join(f"{NETS[r['net']]} R = {r['R']}" for r in holds) or "no run"
    return Verdict("unchecked", ev + f" It holds for {where} only, so the recorded scale does not decide the claim (a "
                   f"run smaller than the paper's is no counterexample).", {"runs": rows})


# ------------------------------------------------------------------------------------ Gill Fig. 2
FIG2_RUNS = {"rn16": "gill_fig2_rn16_cpu", "mlp": "gill_fig2_mlp_cpu"}
NEARLY_PERFECT = 0.05  # our reading of 'nearly perfect': the paper gives no number


@claim("gill2023.fig2",
       source=cite("gill2023", "§2, Fig. 2 and the paragraph 'To study the impact of the number of prototypes'"),
       hypotheses=["SCL with n_w in {0, 10, 50, 100} copies of fixed simplex-ETF prototypes per class in every batch, "
                   "tau = 0.1, STEP R = 10, projection head, no ReLU",
                   "the paper: ResNet-18 on CIFAR-10, batch 2048 (n_w = 50 is ~20% of it); recorded here: "
                   "experiments/results gill_fig2_rn16_cpu (ResNet-18 width 16) and gill_fig2_mlp_cpu (MLP), digits, "
                   "batch 512 views + k n_w prototypes, 200 epochs"],
       statement=("As n_w increases the geometry converges more strongly to the ETF, and 'once the prototypes make up "
                  "~20% of the batch size, convergence is nearly perfect (see n_w = 50)'."),
       expected="unchecked", kind="empirical")
def check_gill_fig2(budget: Budget) -> Verdict:
    if (m := _missing(FIG2_RUNS.values())) is not None:
        return m
    rows = []
    for net, d in FIG2_RUNS.items():
        fin = {nw: series(d, f"nw{nw}", "delta_to_etf")[-1][1] for nw in (0, 10, 50, 100)}
        rows.append({"net": net, "final_delta_to_etf": fin,
                     "decreasing_in_nw": all(a > b for a, b in zip(list(fin.values()), list(fin.values())[1:])),
                     "nw50_nearly_perfect": fin[50] <= NEARLY_PERFECT})
    mono = all(r["decreasing_in_nw"] for r in rows)
    perfect = [r["nw50_nearly_perfect"] for r in rows]
    fraction = 10 * 50 / (512 + 10 * 50)
    ev = ("Recorded final Delta_G_ETF (epoch 200) by n_w 0 / 10 / 50 / 100: " +
          "; ".join(f"{NETS[r['net']]} " + " / ".join(f"{v:.3f}" for v in r["final_delta_to_etf"].values()) for r in rows) +
          f". Falling with n_w in {'both networks' if mono else 'not every network'}. 'Nearly perfect' has no number in "
          f"the paper; read as Delta <= {NEARLY_PERFECT:g}, n_w = 50 meets it with "
          f"{' and '.join(NETS[r['net']] for r in rows if r['nw50_nearly_perfect']) or 'no network'} and not with "
          f"{' and '.join(NETS[r['net']] for r in rows if not r['nw50_nearly_perfect']) or 'none'}. Scale: digits, "
          f"200 epochs, CPU; the 500 prototypes of n_w = 50 are {100 * fraction:.0f}% of our batch, not 20%. ")
    if mono and all(perfect):
        return Verdict("confirmed", ev, {"runs": rows})
    return Verdict("unchecked", ev + "The recorded scale does not decide 'nearly perfect at n_w = 50'.", {"runs": rows})


# ---------------------------------------------------------------------------------- Koromilas Table 3
TABLE3_RUN = "koromilas_table3_rn16_cpu"
NORMALISED = ("normface", "ntce", "nonl")


@claim("koromilas2026.table3",
       source=cite("koromilas2026", "§5.2, Table 3 (CIFAR-10 column) and its findings (i), (ii), (iv)"),
       hypotheses=["K = 10 classes, training-set NC metrics of §5.2 (the authors' variants) at the end of training",
                   "CE, NormFace, NTCE and NONL as classifier-learning losses, SCL with the FP classifier",
                   "the paper: CIFAR-10, ResNet-18, 1000 epochs; recorded here: experiments/results "
                   "koromilas_table3_rn16_cpu (ResNet-18 width 16, balanced digits, 100 epochs, tau = 0.2)"],
       statement=("(i) CE fails to achieve NC (lower inter-class erank, much larger alignment errors); (ii) NormFace, "
                  "NTCE and NONL reach inter-class and weight erank K - 1 with near-zero alignment errors, NONL best "
                  "through its lower intra-class erank; (iv) the FP classifier makes the weight alignment 0 by "
                  "construction. (Finding (iii), SCL with linear probing, and the CIFAR-100 column are not recorded.)"),
       expected="confirmed", kind="empirical")
def check_koromilas_table3(budget: Budget) -> Verdict:
    if (m := _missing([TABLE3_RUN])) is not None:
        return m
    f = {m_: final_metrics(TABLE3_RUN, m_) for m_ in ("ce", *NORMALISED, "scl_fp")}
    K = 10
    crit = {
        "(i) CE inter erank below every normalised loss": all(f["ce"]["erank_inter"] < f[m_]["erank_inter"] for m_ in NORMALISED),
        "(i) CE alignments >= 3x every normalised loss's": all(
            f["ce"][a] >= 3 * f[m_][a] for m_ in NORMALISED for a in ("align_weight_class", "align_weight_instance")),
        "(ii) inter and weight erank >= 0.99 (K - 1)": all(
            f[m_][e] >= 0.99 * (K - 1) for m_ in NORMALISED for e in ("erank_inter", "erank_weights")),
        "(ii) NONL has the lowest intra erank of the three": f["nonl"]["erank_intra"] == min(f[m_]["erank_intra"] for m_ in NORMALISED),
        "(iv) FP weight alignment 0 (<= 1e-12)": f["scl_fp"]["align_weight_class"] <= 1e-12,
    }
    table = "; ".join(f"{m_}: intra {v['erank_intra']:.2f}, inter {v['erank_inter']:.2f}, weights "
                      f"{v['erank_weights']:.2f}, weight align {v['align_weight_class']:.3g}, instance align "
                      f"{v['align_weight_instance']:.3g}" for m_, v in f.items())
    ev = (f"Recorded final training-set metrics (epoch {f['ce']['epoch']}): {table}. Criteria: " +
          "; ".join(f"{c}: {'holds' if ok else 'FAILS'}" for c, ok in crit.items()) +
          ". (The paper's 'near-zero' alignments, 0.08-0.16, are 4.3-7.4x below CE's 0.59-0.69; ours 0.11-0.19 against "
          "0.96-1.05.) Scale: balanced digits (1,347 images, K = 10), ResNet-18 at width 16, 100 epochs, tau = 0.2, CPU. "
          "At this scale the classifier-learning losses act on post-ReLU features and learn an orthogonal frame, which "
          "the centred metrics count as NC (experiments/RESULTS.md).")
    ok = all(crit.values())
    return Verdict("confirmed" if ok else "unchecked", ev, {"final": f, "criteria": crit})
