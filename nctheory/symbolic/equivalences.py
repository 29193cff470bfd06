"""Prototype-loss equivalences: Gill et al. 2023 Remark 1 and Koromilas et al. 2026 Thm 4.2.

Gill Remark 1 (Gill et al. 2023, §3, Remark 1): Prop. 1's printed limit (Eq. (1), App. A.1), per sample,
    -log softmax(W h/tau)[y] - w_y.h/tau  =  CE(W h/tau, y)  +  (-w_y.h/tau),
i.e. CE with the fixed classifier W (nctheory.losses.ce_fixed_classifier) on normalised features plus an
alignment term. The identity is symbolic; the derived n_w -> oo limit (nctheory.symbolic.prototypes)
has a third term sum_c exp(w_c.h/tau)/Z_c, so the remark describes the printed form, not the limit.

Koromilas Thm 4.2 (Koromilas et al. 2026, §4.3, Theorem 4.2; proof in App. B): SCL (Eq. 2, mean over
the 2M anchors) and L_proto (Eq. 6) have the same global minimisers. The printed proof (App. B) goes
through L_* (Eq. 13), which is not well defined: the argument of its log,
sum_c n_c e^(a_i.mu_c/tau) - e^(1/tau), can be <= 0. The derivation here replaces that step by
Proposition P (this project's, not the paper's), per anchor i of class y with
n = n_y >= 2, x = a_i.mu_y (<= 1 for unit rows), R = sum_{c != y} n_c exp(a_i.mu_c/tau) > 0:

    l_i^SCL   >= g(s),  s = (n x - 1)/((n - 1) tau)       (Jensen on every class)
    l_i^proto  = g(t),  t = x/tau                          (definition)
    g(z) = -z + log(R + (n - 1) e^z),   g'(z) = -R/(R + (n - 1) e^z) < 0,   t - s = (1 - x)/((n - 1) tau) >= 0

so L_SCL >= L_proto, with equality iff every class is collapsed. Hence argmin L_SCL = argmin L_proto as
soon as min L_SCL = min L_proto and the proto minimisers are collapsed (checked by the certified Gram
solver, balanced and outside: imbalanced, non-negative features; d < K - 1 by Riemannian descent).
"""

from __future__ import annotations

import sympy as sp

from nctheory.symbolic.core import Derivation, Step, derivation, is_zero

tau = sp.Symbol("tau", positive=True)


def remark1_derivation() -> Derivation:
    k = 3  # the identity is per logit vector; shown for symbolic logits of k = 3 classes and for general k below
    ell = sp.symbols(f"ell0:{k}", real=True)  # ell_c = w_c.h (unit h, unit w_c)
    y = 0
    printed = -(sp.log(sp.exp(ell[y] / tau) / sum(sp.exp(e / tau) for e in ell)) + ell[y] / tau)
    ce = sp.log(sum(sp.exp(e / tau) for e in ell)) - ell[y] / tau
    align = -ell[y] / tau
    diff = sp.simplify(sp.expand_log(printed - (ce + align), force=True))
    K = sp.Symbol("k", integer=True, positive=True)
    c = sp.Symbol("c", integer=True)
    lg = sp.IndexedBase("ell")
    gen_printed = -(sp.log(sp.exp(lg[1] / tau) / sp.Sum(sp.exp(lg[c] / tau), (c, 1, K))) + lg[1] / tau)
    gen_ce = sp.log(sp.Sum(sp.exp(lg[c] / tau), (c, 1, K))) - lg[1] / tau
    gen_diff = sp.simplify(sp.expand_log(gen_printed - gen_ce + lg[1] / tau, force=True))
    from nctheory.symbolic.prototypes import prop1_derivation

    p1 = prop1_derivation()
    steps = [Step("Prop. 1's printed limit per sample (logits ell_c = w_c.h):", printed),
             Step("CE with fixed classifier W/tau (nctheory.losses.ce_fixed_classifier):", ce),
             Step("alignment term:", align),
             Step(f"printed - (CE + alignment), k = 3: {diff}; general k (indexed logits): {gen_diff}"),
             Step("the derived n_w -> oo limit (gill2023.prop1) adds, per sample, sum_c exp(w_c.h/tau)/Z_c: "
                  "Remark 1's description holds for the printed form, not for the limit of the loss",
                  sp.sympify(p1.details["missing_term"]))]
    agree = diff == 0 and gen_diff == 0
    return Derivation(name="gill2023.remark1", title="Gill et al. Remark 1: printed limit = CE with fixed classifier "
                      "on normalised features + alignment", source="Gill et al. 2023, §3, Remark 1",
                      steps=steps, derived=ce + align, stated=printed, agree=agree,
                      conditions="identity holds for every W, h, tau; the true n_w -> oo limit has the extra "
                                 "prototype-repulsion term (see gill2023.prop1)")


def proposition_p():
    """Symbols and expressions of Proposition P (module docstring)."""
    n = sp.Symbol("n", positive=True)  # class count n_y (>= 2)
    x = sp.Symbol("x", real=True)  # a_i . mu_y
    Rs = sp.Symbol("R", positive=True)
    z = sp.Symbol("z", real=True)
    g = -z + sp.log(Rs + (n - 1) * sp.exp(z))
    s = (n * x - 1) / ((n - 1) * tau)
    t = x / tau
    return n, x, Rs, z, g, s, t


def thm4_2_derivation() -> Derivation:
    n, x, Rs, z, g, s, t = proposition_p()
    steps = []
    # L_proto per anchor from the definition: -t + log(-e^t + sum_c n_c e^{a.mu_c/tau}) with the own class n e^t
    proto_def = -t + sp.log(-sp.exp(t) + n * sp.exp(t) + Rs)
    same = is_zero(proto_def - g.subs(z, t))
    steps.append(Step("L_proto per anchor (Eq. 6): -t + log(-e^t + n e^t + R) with t = a_i.mu_y/tau; equals g(t): "
                      f"{same}", proto_def))
    # SCL: positive mean (n mu - a_i)/(n - 1) gives a_i.(...) = (n x - 1)/(n - 1) (unit a_i)
    pos = sp.simplify((n * x - 1) / (n - 1))
    steps.append(Step("SCL per anchor: the mean positive inner product (n mu_y - a_i)/(n - 1) . a_i = (below); Jensen "
                      "on exp over the n - 1 classmates and over each other class c (n_c e^{a.mu_c/tau}) gives "
                      "l_SCL >= g(s), s = (below)/tau", pos))
    gp = sp.simplify(sp.diff(g, z))
    gp_neg = sp.simplify(gp.subs(n, 1 + sp.Symbol("P", positive=True))).is_negative
    steps.append(Step(f"g'(z) = (below): negative for n > 1: {gp_neg}", gp))
    ts = sp.simplify(t - s)
    steps.append(Step("t - s = (below) >= 0 iff x = a_i.mu_y <= 1 (Cauchy-Schwarz, |mu_y| <= 1), = 0 iff class y "
                      "collapsed", ts))
    steps.append(Step("hence l_SCL >= g(s) >= g(t) = l_proto: L_SCL >= L_proto, equality iff every class collapsed "
                      "(Proposition P, any counts >= 2, any d)"))
    # the printed proof's L_* (App. B, Eq. (13)): its log argument D* can be <= 0, so L_* is undefined
    Dstar = 2 * sp.exp(0) + 2 * sp.exp(-1 / sp.Rational(1, 2)) - sp.exp(1 / sp.Rational(1, 2))
    steps.append(Step(f"printed proof: L_* (Eq. 13) has log(sum_c n_c e^(a.mu_c/tau) - e^(1/tau)); for K = 2, tau = "
                      f"1/2, A = [e1, -e1, -e1, -e1], labels (0,0,1,1): argument = (below) = {float(Dstar):.4f} < 0, "
                      "so L_* is undefined and 'min L_* = L_*(A*)' fails; the conclusion needs Proposition P instead",
                      Dstar))
    Kk = sp.Symbol("K", integer=True, positive=True)
    etf_val = sp.log(n - 1 + n * (Kk - 1) * sp.exp(-Kk / ((Kk - 1) * tau)))
    steps.append(Step("balanced: both minima equal the collapsed-ETF value per anchor (Thm 4.2's centred simplex "
                      "ETF, n = 2M/K per class):", etf_val))
    agree = bool(same and gp_neg and Dstar.is_negative)
    return Derivation(name="koromilas2026.thm4_2", title="Koromilas et al. Thm 4.2: SCL and L_proto share minimisers",
                      source="Koromilas et al. 2026, §4.3 Theorem 4.2; proof in App. B, Eq. (13)", steps=steps,
                      derived=sp.Symbol("L_SCL >= L_proto, equality iff collapsed"),
                      stated=sp.Symbol("argmin L_SCL = argmin L_proto"), agree=agree,
                      conditions="the statement holds (balanced, unit norm); the printed proof does not (L_* "
                                 "undefined); the inequality holds for any counts >= 2 and any d",
                      details={"Dstar_example": float(Dstar)})


derivation("gill2023.remark1", "Gill Remark 1: printed limit = CE with fixed classifier + alignment (identity), "
           "and what the true limit adds")(remark1_derivation)
derivation("koromilas2026.thm4_2", "Koromilas Thm 4.2: L_SCL >= L_proto (Proposition P), the printed proof's "
           "L_* gap, minimiser sets")(thm4_2_derivation)
