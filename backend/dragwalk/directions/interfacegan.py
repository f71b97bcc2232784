"""InterFaceGAN (Shen et al., CVPR 2020): the normal of a linear boundary between labels.

Positives and negatives (the top and bottom ``share`` of an attribute score, or a
person's tags) are separated by a linear SVM; the hyperplane's unit normal,
oriented toward the positives, is the direction. The SVM is a small
squared-hinge problem solved with L-BFGS here (no scikit-learn dependency).
A conditional edit ``n1 - (n1 . n2) n2`` (renormalised) keeps attribute ``n2``
fixed while moving ``n1``.

Where this departs from the paper, and why. The paper scores 500k samples and keeps the top
and bottom 2 % (10k each side); scoring with dlib costs milliseconds a face, so the model's
scored samples number 1-2k, and 2 % of them is a few dozen faces. Measured on the default
model (2000 scored samples, 80 held-out faces, every shipped attribute, a walk of -1 / +1
unit, change of the attribute's score in units of its spread over the held-out faces /
share of faces moving the right way): share 0.05: 1.06 / 0.92, 0.1: 1.12 / 0.94,
0.25: 1.23 / 0.94, 0.5: 1.30 / 0.96; 0.5 was best on each of the five attributes. With
few samples, more of them beats more extreme ones: the default share is 0.5 (a split at the
median). The SVM's data term: ``sqrt(N)`` times the mean squared hinge gave 1.25 / 0.96 at
share 0.25, the standard sum 1.23 / 0.94, no difference at this size, so the standard
C-SVM form is used.

Fewer scored samples would cut the scoring time (issue 16), but they change the result: measured on
3000 scored faces of the default model (every shipped attribute, training on the first N, AUC of
the projection on 1000 held-out faces for their median split; cosine to the 1000-sample normal):
N 500: AUC 0.68-0.91, cosine 0.76-0.88; N 700: 0.72-0.96, 0.91-0.97; N 1000: 0.75-0.96; N 2000:
0.76-0.98. Two disjoint 1000-sample sets give normals only 0.72-0.92 apart, so the direction is
limited by its samples and 1000 stays the default (LSD, on the same faces, alike). The scored
faces are computed once per model and shared by InterFaceGAN and LSD (``labelled.scored_samples``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..models.base import Generator
from .base import DirectionSet, edit_space, layer_range, normalize_rows, projected_std
from .labelled import labelled_sets


def linear_svm(x: Tensor, y: Tensor, c: float = 1.0, iters: int = 200) -> tuple[Tensor, float, float]:
    """Soft-margin linear SVM (squared hinge) for labels ``y`` in {-1, +1}.

    The standard C-SVM objective ``|w|^2 / 2 + C sum_i max(0, 1 - y_i f(x_i))^2`` (what
    scikit-learn's ``LinearSVC`` minimises), as the paper's linear SVM. An earlier version
    weighted the data term by ``sqrt(N)`` times its mean instead of its sum; on held-out faces
    the two were indistinguishable (see the module docstring), so the standard form stays.

    Returns ``(unit normal [D], bias, training accuracy)``; the data is centred first
    so the bias stays small and L-BFGS converges quickly.
    """
    x = x.double()
    y = y.double()
    mean = x.mean(0)
    xc = x - mean
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        margin = (1 - y * (xc @ w + b)).clamp_min(0)
        loss = 0.5 * w.dot(w) + c * margin.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_, b_ = w.detach(), float(b.detach()) - float(mean @ w.detach())
    acc = float(((x @ w_ + b_ > 0).double() * 2 - 1 == y).double().mean())
    norm = float(w_.norm())
    if norm == 0:
        raise ValueError("the labelled samples could not be separated at all (all on one side)")
    return (w_ / norm).float(), b_ / norm, acc


def conditional(primary: Tensor, conditions: Tensor) -> Tensor:
    """``primary`` with the span of the unit rows ``conditions`` removed, renormalised."""
    q, _ = torch.linalg.qr(conditions.T.double())
    out = primary.double() - q @ (q.T @ primary.double())
    if float(out.norm()) < 1e-8:
        raise ValueError("the direction lies in the span of the conditions")
    return (out / out.norm()).float()


def compute(generator: Generator, attribute: str | list[str] = "all", samples: int = 1000, seed: int = 0,
            share: float = 0.5, codes: Any = None, labels: Any = None, condition: str | None = None,
            layers: Sequence[int] | None = None, **_: object) -> DirectionSet:
    """One boundary normal per attribute (``all`` = every shipped scorer, or a person's tags)."""
    space = edit_space(generator)
    rows = layer_range(generator, layers)
    sets = labelled_sets(generator, attribute, samples, seed, share, codes, labels)
    if condition and condition not in [n for n, _, _ in sets]:
        sets += labelled_sets(generator, condition, samples, seed, share)
    normals, accs, names = [], [], []
    for name, neg, pos in sets:
        x = torch.cat([neg, pos])
        y = torch.cat([-torch.ones(len(neg)), torch.ones(len(pos))])
        n, _, acc = linear_svm(x, y)
        normals.append(n)
        accs.append(acc)
        names.append(name)
    vectors = torch.stack(normals)
    if condition:
        ci = names.index(condition)
        keep = [i for i in range(len(names)) if i != ci]
        vectors = torch.stack([conditional(vectors[i], vectors[ci:ci + 1]) for i in keep])
        names = [f"{names[i]} | {condition} fixed" for i in keep]
        accs = [accs[i] for i in keep]
    vectors = normalize_rows(vectors)
    return DirectionSet(method="interfacegan", model=generator.name, space=space, vectors=vectors,
                        scales=projected_std(generator, vectors, space), layers=rows, labels=names,
                        values=accs,
                        params={"attribute": attribute if isinstance(attribute, str) else list(attribute),
                                "samples": samples, "seed": seed, "share": share, "condition": condition,
                                "tags": codes is not None, "layers": list(rows) if rows else None,
                                "counts": [[len(neg), len(pos)] for _, neg, pos in sets]})
