"""nctheory: executable theorems about neural-collapse geometry under supervised contrastive loss.

Package map (dependencies point downwards only):

    losses/      every loss, defined once in torch (float64-exact), plus its Gram-matrix form
    geometry     simplex ETF, orthogonal frames, prototype geometries
    metrics      NC metrics with the papers' exact definitions
    batching/    batching plans, batch interaction graphs, check-batches, samplers
    symbolic/    sympy derivations of the papers' closed forms
    solvers/     certified UFM solvers (convex Gram programs, symmetry-reduced programs, Riemannian GD)
    claims/      the claims registry: each paper statement declared once, checks attached, one verdict rule
    harness/     deep-net training harness (imports losses, metrics, batching; never the reverse)
    cli/         the `nctheory` command line

symbolic and solvers never import harness; harness never imports claims.
"""

__version__ = "0.1.0"
