"""First-order UFM / UFM+ solver over unit (non-negative) features in torch, with restarts.

Problem:  min_Z f(Z)  over Z in R^{m x d} with unit rows (the product of m spheres S^{d-1}), rows
optionally entrywise >= 0 (UFM+), some rows optionally fixed (prototypes / classifiers). Unlike the
Gram program this handles d < n and any loss given as a torch function (mini-batch SCL with n in the
thousands), but it is non-convex in Z: it returns the best of several restarts and their spread,
never a certificate of global optimality. With d >= n it cross-checks the certified solvers.

Method: spectral projected gradient (Birgin, Martinez & Raydan 2000) on the product of spheres.
Step Z+ = P(Z - eta * grad_R f(Z)), with grad_R the Riemannian gradient (row-wise tangent projection
g_i - (g_i . z_i) z_i), P the row-wise metric projection onto the feasible set (x/||x||, or
relu(x)/||relu(x)|| for UFM+), eta the Barzilai-Borwein step, accepted by a non-monotone Armijo test
over the last 10 values. float64; CUDA when available.

Stationarity (stop criterion): the largest row norm of the KKT residual
    r_i = g_i - (g_i . z_i) z_i                                  (UFM: the Riemannian gradient)
    r_ij -> min(r_ij, 0) where z_ij = 0 (active bound)           (UFM+: KKT of z >= 0, ||z|| = 1)
is at most ``gtol``. A restart that hits ``max_iter`` or stalls (Armijo fails down to eta = 1e-20)
is reported as not converged; if no restart converges, :class:`SolverError`.

What the result means: the best stationary restart is a feasible point, so its value is an *upper
bound* on the minimum in dimension d, never a certified optimum (non-convex: a restart can stop at a
local minimum or saddle, e.g. in small d or under UFM+). ``summary()`` reports it as ``upper_bound``
with ``certified: False``.

d = 1 is special: the unit sphere S^0 = {-1, +1} is discrete, its tangent space is {0}, so every point
has zero Riemannian gradient and "stationary" would hold at every random start. solve_riemannian
therefore does not run the gradient method in d = 1: it returns the exact minimum over all sign
patterns (:func:`nctheory.solvers.signs.solve_signs`, a SignResult with the same value/Z/converged/
restarts/spread attributes, ``exact = True``), or raises InputError when there are too many patterns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nctheory.errors import InputError, SolverError


@dataclass
class RiemannianResult:
    value: float
    Z: np.ndarray
    stationarity: float
    converged: int
    restarts: int
    values: list
    spread: float
    iterations: list
    stop_reasons: list
    seconds: float
    device: str
    gtol: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able result. The number is under ``upper_bound`` (never ``value``, which nctheory reserves
        for certified optima) with ``certified: False``: a first-order method certifies no global optimum."""
        return {"method": "riemannian", "upper_bound": self.value, "certified": False,
                "status": "stationary" if self.converged else "not converged",
                "stationarity": self.stationarity, "gtol": self.gtol, "converged_restarts": self.converged,
                "restarts": self.restarts, "values": self.values, "spread": self.spread,
                "iterations": self.iterations, "stop_reasons": self.stop_reasons, "seconds": self.seconds,
                "device": self.device, **self.extra}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _project(X: torch.Tensor, nonneg: bool) -> torch.Tensor:
    if nonneg:
        X = X.clamp(min=0)
    nrm = X.norm(dim=1, keepdim=True)
    if bool((nrm == 0).any()):  # a row projected to 0 (all entries negative): keep its largest entry
        idx = torch.nonzero(nrm[:, 0] == 0)[:, 0]
        e = torch.zeros_like(X[idx])
        e[torch.arange(idx.numel()), X[idx].argmax(1)] = 1.0
        X = X.clone()
        X[idx] = e
        nrm = X.norm(dim=1, keepdim=True)
    return X / nrm


def _residual(Z: torch.Tensor, g: torch.Tensor, nonneg: bool) -> torch.Tensor:
    r = g - (g * Z).sum(1, keepdim=True) * Z
    if nonneg:
        r = torch.where(Z <= 0, r.clamp(max=0), r)
    return r


def _check_options(restarts, max_iter, gtol):
    """Bad numeric options are input errors (one line, exit 2), not solver failures."""
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise InputError(f"restarts must be an integer >= 1, got {restarts!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise InputError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    try:
        g = float(gtol)
    except (TypeError, ValueError):
        raise InputError(f"gtol must be a positive number, got {gtol!r}") from None
    if not (np.isfinite(g) and g > 0):
        raise InputError(f"gtol must be a positive finite number, got {gtol!r}")


def solve_riemannian(objective, m: int, d: int, *, nonneg: bool = False, fixed_rows=None, fixed=None,
                     restarts: int = 8, seed: int = 0, max_iter: int = 5000, gtol: float = 1e-6,
                     device=None, init=None) -> RiemannianResult:
    """Minimise objective(Z) (a torch scalar) over Z (m x d) with unit rows (>= 0 entrywise if nonneg).

    fixed_rows / fixed: indices and values (unit rows) of rows held fixed (e.g. prototypes); nonneg is
    applied to the free rows only. init: optional (m x d) starting point for the first restart.
    Returns the best restart that met the stationarity test (an upper bound on the minimum, not a
    certified optimum); raises SolverError when none did. d = 1: the exact sign enumeration
    (:func:`nctheory.solvers.signs.solve_signs`) instead, see the module docstring.
    restarts >= 1, max_iter >= 1 and gtol > 0, else InputError.
    """
    if m < 1 or d < 1:
        raise InputError("need at least one row and one dimension")
    _check_options(restarts, max_iter, gtol)
    if d == 1:  # S^0 = {-1, +1}: every point is stationary; solve exactly instead (module docstring)
        from nctheory.solvers.signs import solve_signs

        return solve_signs(objective, m, nonneg=nonneg, fixed_rows=fixed_rows, fixed=fixed)
    device = torch.device(device) if device is not None else default_device()
    free, F = _fixed_rows(m, d, fixed_rows, fixed, device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    t0 = time.perf_counter()
    runs = []
    for rs in range(restarts):
        if rs == 0 and init is not None:
            X = torch.as_tensor(np.asarray(init, dtype=np.float64), dtype=torch.float64).to(device)
        else:
            X = torch.randn(m, d, generator=gen, dtype=torch.float64).to(device)
            if nonneg:
                X = X.abs()
        Z = _project(X, nonneg)
        if F is not None:
            Z[~free] = F
        runs.append(_spg(objective, Z, free, F, nonneg, max_iter, gtol))
    ok = [r for r in runs if r[2] == "stationary"]
    if not ok:
        raise SolverError(f"Riemannian solver: none of {restarts} restarts reached stationarity {gtol:.0e} "
                          f"in {max_iter} iterations (best residual {min(r[1] for r in runs):.1e}, "
                          f"stops: {sorted(set(r[2] for r in runs))}); value not reported")
    best = min(ok, key=lambda r: r[0])
    okv = [r[0] for r in ok]
    return RiemannianResult(value=best[0], Z=best[4], stationarity=best[1], converged=len(ok), restarts=restarts,
                            values=[r[0] for r in runs], spread=float(max(okv) - min(okv)),
                            iterations=[r[3] for r in runs], stop_reasons=[r[2] for r in runs],
                            seconds=time.perf_counter() - t0, device=str(device), gtol=gtol)


def _fixed_rows(m: int, d: int, fixed_rows, fixed, device):
    """(mask of the free rows, the fixed rows' values or None), validated (shape, unit norm)."""
    free = torch.ones(m, dtype=torch.bool)
    F = None
    if fixed_rows is not None:
        idx = torch.as_tensor(np.asarray(fixed_rows, dtype=np.int64))
        F = torch.as_tensor(np.asarray(fixed, dtype=np.float64), dtype=torch.float64, device=device)
        if F.shape != (idx.numel(), d):
            raise InputError(f"fixed rows must be {idx.numel()} x {d}, got {tuple(F.shape)}")
        if not torch.allclose(F.norm(dim=1), torch.ones(idx.numel(), dtype=torch.float64, device=device), atol=1e-9):
            raise InputError("fixed rows must have unit norm")
        free[idx] = False
    return free.to(device), F


def _spg(objective, Z, free, F, nonneg: bool, max_iter: int, gtol: float):
    """One restart of the spectral projected gradient method (module docstring) from the feasible Z:
    returns (value, stationarity, stop reason, iterations, Z as numpy)."""

    def fg(Z):
        Zr = Z.detach().requires_grad_(True)
        f = objective(Zr)
        (g,) = torch.autograd.grad(f, Zr)
        g = g.clone()
        g[~free] = 0
        return float(f.detach()), g

    f, g = fg(Z)
    hist = [f]
    eta = 1.0 / max(float(_residual(Z, g, nonneg).norm()), 1e-12)
    reason, it = "max_iter", 0
    stat = float(_residual(Z, g, nonneg).norm(dim=1).max())
    for it in range(1, max_iter + 1):
        stat = float(_residual(Z, g, nonneg).norm(dim=1).max())
        if stat <= gtol:
            reason = "stationary"
            break
        gr = _residual(Z, g, nonneg) if not nonneg else g - (g * Z).sum(1, keepdim=True) * Z
        fref = max(hist[-10:])  # non-monotone Armijo over the last 10 values
        step_ok = False
        e = eta
        while e > 1e-20:
            Zn = _project(Z - e * gr, nonneg)
            if F is not None:
                Zn[~free] = F
            fn, gn = fg(Zn)
            if fn <= fref + 1e-4 * float((g * (Zn - Z)).sum()):
                step_ok = True
                break
            e *= 0.5
        if not step_ok:
            reason = "stalled"
            break
        S, Y = Zn - Z, (_residual(Zn, gn, nonneg) - _residual(Z, g, nonneg))
        sy = float((S * Y).sum())
        eta = float((S * S).sum()) / sy if sy > 0 else 10 * e  # Barzilai-Borwein step
        eta = min(max(eta, 1e-12), 1e6)
        Z, f, g = Zn, fn, gn
        hist.append(f)
    else:
        stat = float(_residual(Z, g, nonneg).norm(dim=1).max())
        if stat <= gtol:
            reason = "stationary"
    return f, stat, reason, it, Z.detach().cpu().numpy()


def form_objective(form, device=None):
    """torch objective Z -> L(Z Z^T) for an LSEForm (:meth:`LSEForm.torch`: the function the Gram program
    minimises)."""
    f = form.torch(device if device is not None else default_device())
    return lambda Z: f(Z @ Z.T)


def loss_objective(loss, y, *, k: int | None = None, tau: float = 1.0, n_w: int = 0, batches=None,
                   multiset: bool = False):
    """torch objective over the joint Z = [features (n rows); classifier / prototypes (k rows, for the losses
    that take them)] of a loss of the catalogue (:func:`nctheory.losses.catalogue.get_loss`), in the loss's
    native reduction: the same function as its Gram form (:meth:`LossSpec.gram_form`) at Z Z^T. multiset:
    the batches may repeat a sample (see nctheory.losses.scl_batches)."""
    from nctheory.losses.catalogue import get_loss

    spec = get_loss(loss)
    y = np.asarray(y, dtype=np.int64)
    n = y.size
    uses_w = spec.classifier != "none"

    def f(Z):
        yt = torch.as_tensor(y, device=Z.device)
        return spec(Z[:n], yt, W=Z[n:] if uses_w else None, tau=tau, n_w=n_w, k=k, batches=batches,
                    reduction=spec.native_reduction, multiset=multiset)

    return f
