"""Transferability estimates from frozen features: kNN accuracy, linear probe, LogME; rank correlation with outcomes.

* :func:`knn_accuracy` — cross-validated k-nearest-neighbour accuracy with cosine similarity (as in the kNN monitor of
  Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination").
* :func:`linear_probe_accuracy` — cross-validated multinomial logistic regression (L2, L-BFGS in torch) on
  standardised features (Kornblith et al. 2019, "Do Better ImageNet Models Transfer Better?").
* :func:`logme` — the LogME score: the maximum log evidence per sample of a Bayesian linear model on the features,
  found with the fixed-point iteration over an SVD (You et al. 2021, "LogME: Practical Assessment of Pre-trained
  Models for Transfer Learning", ICML), averaged over one-vs-rest targets.
* :func:`rank_correlation` — Kendall's tau and Spearman's rho between estimates and real fine-tuning outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

# the cross-validated kNN lives below the SSL monitor and evaluation, which both use it; re-exported here
from monai_transfer.utils.knn import _check_folds, _xy, knn_accuracy, stratified_folds

__all__ = [
    "stratified_folds",
    "knn_accuracy",
    "linear_probe_accuracy",
    "logme",
    "log_evidence",
    "rank_correlation",
]


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, n_cls: int, l2: float, max_iter: int) -> Any:
    # zero-initialised parameters (no draw from the global torch RNG), full-batch L-BFGS
    w = torch.zeros(x.shape[1], n_cls, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_cls, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda z: z @ w + b


def linear_probe_accuracy(
    features: Any, labels: Any, n_folds: int = 5, l2: float = 1e-3, max_iter: int = 200, seed: int = 0
) -> float:
    """Cross-validated accuracy of an L2-regularised multinomial logistic regression on standardised features.

    Deterministic: zero initialisation and full-batch L-BFGS, no random draws beyond the seeded folds.

    Args:
        features: ``(N, D)``.
        labels: class indices ``(N,)``.
        n_folds: stratified folds (capped at N).
        l2: weight decay coefficient on the weights (not the bias).
        max_iter: L-BFGS iterations.
        seed: fold assignment seed.
    """
    f, y = _xy(features, labels)
    n_folds = _check_folds(len(y), n_folds)
    folds = stratified_folds(y, n_folds, seed)
    n_cls = max(int(y.max()) + 1, 2)
    correct = 0
    for i in range(n_folds):
        te, tr = folds == i, folds != i
        if not te.any() or not tr.any():
            continue
        mu, sd = f[tr].mean(0), f[tr].std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        xtr, xte = torch.as_tensor((f[tr] - mu) / sd), torch.as_tensor((f[te] - mu) / sd)
        lin = _fit_logreg(xtr, torch.as_tensor(y[tr]), n_cls, l2, max_iter)
        with torch.no_grad():
            correct += int((lin(xte).argmax(1).numpy() == y[te]).sum())
    return correct / len(y)


def log_evidence(features: Any, target: Any, alpha: float, beta: float) -> float:
    """Log evidence per sample, ``log p(y | F, alpha, beta) / N``, of the model ``y = F w + e``,
    ``w ~ N(0, alpha^-1 I)``, ``e ~ N(0, beta^-1 I)``, computed directly (``y ~ N(0, beta^-1 I + alpha^-1 F F^T)``).
    The reference for :func:`logme`; O(N^3)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64).ravel()
    cov = np.eye(len(y)) / beta + f @ f.T / alpha
    return float(sps.multivariate_normal(mean=np.zeros(len(y)), cov=cov, allow_singular=False).logpdf(y) / len(y))


def _logme_single(u: np.ndarray, sigma: np.ndarray, y: np.ndarray, n: int, d: int, max_iter: int, tol: float) -> tuple:
    x = u.T @ y
    x2 = x**2
    res_x2 = float((y**2).sum() - x2.sum())  # the part of y outside the span of the features
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum() + res_x2)
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= tol:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
    res2 = float((x2 / (1 + sigma / t) ** 2).sum() + res_x2)
    # log|A| with A = alpha I_D + beta F^T F: the D - k directions without singular values contribute log(alpha)
    logdet = float(np.sum(np.log(alpha + beta * sigma)) + (d - len(sigma)) * np.log(alpha))
    ev = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * logdet
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(ev / n), alpha, beta


def logme(
    features: Any, labels: Any, regression: bool = False, max_iter: int = 100, tol: float = 1e-3, return_params=False
) -> float | tuple[float, list[tuple[float, float]]]:
    """LogME (You et al. 2021): mean over targets of the maximised log evidence per sample.

    For classification each class gives a one-vs-rest 0/1 target; for regression each column of ``labels``. The
    evidence ``p(y | F) = int p(w | alpha) p(y | F, w, beta) dw`` is maximised over ``alpha, beta`` by the fixed-point
    updates ``alpha = gamma / m^T m``, ``beta = (N - gamma) / ||F m - y||^2`` with
    ``gamma = sum_i beta s_i / (alpha + beta s_i)`` over the squared singular values ``s_i`` of ``F`` (one SVD serves
    every target). Unlike the reference code, the log-determinant also counts the ``D - N`` zero singular values when
    ``N < D``, so the value equals :func:`log_evidence` at the optimum in every case.

    Args:
        features: ``(N, D)`` (use as extracted; LogME is not scale invariant).
        labels: class indices ``(N,)`` or, with ``regression=True``, targets ``(N,)``/``(N, K)``.
        regression: targets are real values.
        max_iter: fixed-point iterations per target (the reference uses 11; more cost little).
        tol: relative change of ``alpha / beta`` to stop.
        return_params: also return ``(alpha, beta)`` per target.

    Returns:
        The LogME score (higher = more transferable), and the parameters when asked.
    """
    f = np.asarray(features.detach().cpu().numpy() if hasattr(features, "detach") else features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    n, d = f.shape
    if regression:
        y = np.asarray(labels, dtype=np.float64)
        targets = y.reshape(n, -1).T if y.size == n or y.ndim == 2 else None
        if targets is None or targets.shape[1] != n:
            raise ValueError(f"regression targets must be (N,) or (N, K) with N={n}")
    else:
        f, yy = _xy(f, labels)
        targets = np.stack([(yy == c).astype(np.float64) for c in range(int(yy.max()) + 1)])
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    out = [_logme_single(u, sigma, t, n, d, max_iter, tol) for t in targets]
    score = float(np.mean([o[0] for o in out]))
    return (score, [(o[1], o[2]) for o in out]) if return_params else score


def rank_correlation(estimates: Mapping[str, float], outcomes: Mapping[str, float]) -> dict[str, float]:
    """Kendall's tau-b and Spearman's rho (with p-values) between estimates and real outcomes over shared names.

    Args:
        estimates: candidate name -> transferability estimate (higher = predicted better).
        outcomes: candidate name -> real fine-tuning metric (higher = better).

    Returns:
        ``kendall_tau``, ``kendall_p``, ``spearman_rho``, ``spearman_p``, ``n`` (NaN with fewer than 2 shared names).
    """
    names = [k for k in estimates if k in outcomes]
    if len(names) < 2:
        return {"kendall_tau": float("nan"), "kendall_p": float("nan"), "spearman_rho": float("nan"),
                "spearman_p": float("nan"), "n": len(names)}  # fmt: skip
    a = [float(estimates[k]) for k in names]
    b = [float(outcomes[k]) for k in names]
    kt = sps.kendalltau(a, b)
    sr = sps.spearmanr(a, b)
    return {"kendall_tau": float(kt.statistic), "kendall_p": float(kt.pvalue), "spearman_rho": float(sr.statistic),
            "spearman_p": float(sr.pvalue), "n": len(names)}  # fmt: skip
