"""Hidden-test checks for notebook 07 (membership inference).

Every check compares the student's function with `course.lib.membership` on many generated inputs: small
hand-made score sets whose values the failure message can show, then random ones (continuous scores, heavily
tied scores, integer-valued arrays, unbalanced sizes). The functions are deterministic, so comparisons are
exact up to floating-point tolerance; no check is statistical.

How answers are compared, so that differently written correct answers pass:

- `attack_roc` is compared as a *curve*, not array for array. The student's (fpr, tpr) points are sorted by
  (fpr, tpr) and joined by straight segments; the answer passes when that polyline equals the reference's:
  every reference point lies on the student's polyline and every student point on the reference's (to 1e-6).
  So extra collinear points (or none: `drop_intermediate=True` is fine), repeated points and any order of
  thresholds pass, while points no threshold can reach (ties split one example at a time, the attack
  reversed) fail. The curve must contain (0, 0) and (1, 1).
- `tpr_at_fpr` is checked at budgets strictly between achievable false-positive rates (k / len(scores_out))
  and, when len(scores_out) is a power of two (so that k / n is exact however it is computed, even as a sum
  of 1/n), at achievable rates themselves, where the boundary must count (fpr <= budget).
- Rates and AUCs are compared to 1e-6: float32 answers pass, while with at most 80 scores a side the
  distinct values differ by more than 7e-5, so no wrong rate can hide inside the tolerance.
- `dp_advantage_bound` is checked for epsilon in [0, 100] (the formula as written overflows beyond e^709, so
  larger epsilons are not graded) to relative tolerance 1e-9 plus 1e-12 absolute.
- `loss_scores` is checked to relative tolerance 1e-4 (plus 1e-6 absolute), loose enough for BCELoss on
  sigmoid outputs in float32 at the logits used here, on datasets shaped like medmnist's; it may return a
  NumPy array or a tensor of shape (len(dataset),).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from course.lib import membership as ref

from . import as_float, call, fail, require, seed_everything

RATE_TOLERANCE = 1e-6
BOUND_RELATIVE_TOLERANCE = 1e-9
BOUND_ABSOLUTE_TOLERANCE = 1e-12
LOSS_RELATIVE_TOLERANCE = 1e-4
LOSS_ABSOLUTE_TOLERANCE = 1e-6
# Inputs with at most this many scores in all are printed in failure messages so the student can rerun them.
PRINTABLE_SCORES = 12
# tpr_at_fpr is asked at most this many budgets of each kind (between rates, at a rate) per score set.
BUDGETS_PER_KIND = 8


# ----------------------------------------------------------------------------------------------------------
# Generated score sets


def _score_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, scores_in, scores_out) triples: fixed small cases first, then random ones of every kind."""
    cases = [
        ("tied scores", np.array([1.0, 2.0, 2.0, 5.0]), np.array([2.0, 3.0, 3.0, 5.0])),
        ("one member and one non-member", np.array([0.3]), np.array([0.7])),
        ("all scores equal", np.array([2.0, 2.0, 2.0]), np.array([2.0, 2.0])),
        ("members scoring higher than non-members", np.array([3.0, 4.0]), np.array([1.0, 2.0])),
    ]
    for _ in range(3):
        small_in, small_out = rng.integers(1, 6), rng.choice([1, 2, 4, 5])
        cases.append(
            (
                "small tied scores",
                rng.integers(0, 4, small_in).astype(float),
                rng.integers(0, 4, small_out).astype(float),
            )
        )
    for _ in range(3):
        num_in, num_out = int(rng.integers(5, 80)), int(rng.choice([8, 16, 32, 64, rng.integers(5, 80)]))
        cases += [
            ("continuous scores", rng.normal(0.0, 1.0, num_in), rng.normal(0.7, 1.0, num_out)),
            (
                "heavily tied scores",
                rng.integers(0, 5, num_in).astype(float),
                rng.integers(1, 6, num_out).astype(float),
            ),
            ("integer scores (int64 arrays)", rng.integers(0, 30, num_in), rng.integers(5, 35, num_out)),
            (
                "losses rounded to 2 decimals",
                np.round(rng.exponential(0.3, num_in), 2),
                np.round(rng.exponential(0.6, num_out), 2),
            ),
        ]
    return cases


def _describe(kind: str, scores_in: np.ndarray, scores_out: np.ndarray) -> str:
    if len(scores_in) + len(scores_out) <= PRINTABLE_SCORES:
        return f"scores_in={scores_in.tolist()}, scores_out={scores_out.tolist()}"
    return f"{kind} ({len(scores_in)} member and {len(scores_out)} non-member scores)"


def _reversed_attack(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs on which the reference plays "member if score >= tau", the attack run backwards."""
    return -scores_in.astype(float), -scores_out.astype(float)


# ----------------------------------------------------------------------------------------------------------
# ROC curves as polylines


def _student_curve(result, what: str) -> np.ndarray:
    """The student's (fpr, tpr) as points of shape (num_points, 2), sorted along the curve, or fail."""
    require(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"{what} should return a tuple (fpr, tpr) of two arrays, got {type(result).__name__}",
    )
    arrays = []
    for name, values in zip(("fpr", "tpr"), result):
        if torch.is_tensor(values):
            values = values.detach().cpu().numpy()
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            fail(f"the {name} returned by {what} should be an array of numbers, got {type(values).__name__}")
        require(values.ndim == 1, f"the {name} returned by {what} should be 1-D, got shape {values.shape}")
        require(
            np.isfinite(values).all() and (values >= -RATE_TOLERANCE).all() and (values <= 1 + RATE_TOLERANCE).all(),
            f"every {name} value returned by {what} should be a rate between 0 and 1",
        )
        arrays.append(values)
    fpr, tpr = arrays
    require(len(fpr) == len(tpr), f"{what} returned {len(fpr)} fpr values but {len(tpr)} tpr values")
    points = np.stack([fpr, tpr], axis=1)[np.lexsort((tpr, fpr))]
    require(
        bool((np.diff(points[:, 1]) >= -RATE_TOLERANCE).all()),
        f"{what}: the true-positive rate should never fall as the false-positive rate grows "
        "(raising the threshold tau can only call more examples members)",
    )
    for corner, meaning in (((0, 0), "no example is called a member"), ((1, 1), "every example is called a member")):
        require(
            bool((np.abs(points - corner).max(axis=1) <= RATE_TOLERANCE).any()),
            f"{what}: the curve should include the point (fpr, tpr) = {corner}, where {meaning}",
        )
    return points


def _reference_curve(scores_in: np.ndarray, scores_out: np.ndarray) -> np.ndarray:
    return np.stack(ref.attack_roc(scores_in, scores_out), axis=1)


def _distance_to_polyline(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Euclidean distance from each of `points` (shape (p, 2)) to the polyline through `vertices` (shape (v, 2))."""
    starts, directions = vertices[:-1], np.diff(vertices, axis=0)
    squared_lengths = (directions**2).sum(axis=1)
    offsets = points[:, None, :] - starts[None, :, :]
    # Repeated vertices give zero-length segments; their nearest point is the vertex itself.
    along = (offsets * directions).sum(axis=2) / np.where(squared_lengths > 0, squared_lengths, 1.0)
    nearest = starts + np.clip(along, 0.0, 1.0)[:, :, None] * directions
    return np.sqrt(((nearest - points[:, None, :]) ** 2).sum(axis=2)).min(axis=1)


def _first_point_off(points: np.ndarray, curve: np.ndarray):
    """The first of `points` farther than the tolerance from `curve`, or None."""
    distances = _distance_to_polyline(points, curve)
    off = np.flatnonzero(distances > RATE_TOLERANCE)
    return points[off[0]] if len(off) else None


def _same_curve(first: np.ndarray, second: np.ndarray) -> bool:
    return _first_point_off(first, second) is None and _first_point_off(second, first) is None


def _point(point: np.ndarray) -> str:
    return f"(fpr={point[0]:.6g}, tpr={point[1]:.6g})"


# ----------------------------------------------------------------------------------------------------------
# Checks


class _MedmnistLike(torch.utils.data.Dataset):
    """Yields (image, target) as medmnist.PneumoniaMNIST with ToTensor does: (1, 28, 28) float32, int64 array (1,)."""

    def __init__(self, size: int, generator: torch.Generator):
        self.images = torch.rand(size, 1, 28, 28, generator=generator)
        self.targets = torch.randint(0, 2, (size, 1), generator=generator).numpy()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]


def _graded_models() -> list[tuple[str, torch.nn.Module]]:
    """One-logit models like notebook 06's MLP, left in training mode; dropout makes eval mode matter."""
    mlp = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 1),
    )
    confident = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1)
    )
    with torch.no_grad():  # logits of a few units, as after training, not only the near-zero ones of a fresh model
        confident[-1].weight.mul_(10.0)
    return [("a three-layer MLP with dropout", mlp), ("a small confident model with dropout", confident)]


def _as_scores(result, size: int, what: str) -> np.ndarray:
    if torch.is_tensor(result):
        result = result.detach().cpu().numpy()
    require(
        isinstance(result, np.ndarray),
        f"{what} should return a numpy.ndarray of per-example losses, got {type(result).__name__}",
    )
    require(
        result.shape == (size,),
        f"{what} should return one loss per example, shape ({size},), got shape {result.shape} "
        "(use reduction='none' and flatten the per-example losses)",
    )
    return result.astype(np.float64)


@contextlib.contextmanager
def _single_threaded_torch():
    """Run torch on one thread, then restore the caller's setting.

    The graded models are tiny: on a grader busy with parallel workers, torch's threads mostly wait for each
    other, which made this check ten times slower than on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_loss_scores(loss_scores, seed: int = 0) -> None:
    generator = seed_everything(seed)
    with _single_threaded_torch():
        _compare_loss_scores(loss_scores, generator)


def _compare_loss_scores(loss_scores, generator: torch.Generator) -> None:
    # 300 examples span more than one batch of 256, the usual batch size. The first dataset is large enough
    # that dropout left on (no eval mode) cannot give the same losses twice by chance.
    for (model_name, model), sizes in zip(_graded_models(), [(37, 300, 1), (37, 5)]):
        for size in sizes:
            dataset = _MedmnistLike(size, generator)
            what = f"loss_scores({model_name}, a dataset of {size} example{'s' if size > 1 else ''})"
            expected = ref.loss_scores(model, dataset)
            before = [parameter.detach().clone() for parameter in model.parameters()]
            model.train()
            got = _as_scores(call(loss_scores, model, dataset), size, what)
            require(
                all(torch.equal(old, new) for old, new in zip(before, model.parameters())),
                f"{what} changed the model's parameters: scoring must not train the model",
            )
            if np.allclose(got, expected, rtol=LOSS_RELATIVE_TOLERANCE, atol=LOSS_ABSOLUTE_TOLERANCE):
                continue
            model.train()
            again = _as_scores(call(loss_scores, model, dataset), size, what)
            require(
                np.array_equal(got, again),
                f"{what} gave different losses on two calls: put the model in eval mode (model.eval()) "
                "so dropout is switched off while scoring",
            )
            require(
                not np.allclose(got, np.exp(-expected), rtol=LOSS_RELATIVE_TOLERANCE),
                f"{what} returned the probability of the true label; the score should be the loss "
                "(BCEWithLogitsLoss per example: lower means 'more likely a member')",
            )
            worst = int(np.argmax(np.abs(got - expected)))
            fail(
                f"{what}: the loss of example {worst} should be {expected[worst]:.6g}, got {got[worst]:.6g}. "
                "Score every example, in dataset order, with the model in eval mode and "
                "BCEWithLogitsLoss(reduction='none') on its logit and the float target"
            )


def check_attack_roc(attack_roc, seed: int = 0) -> None:
    seed_everything(seed)
    for kind, scores_in, scores_out in _score_cases(np.random.default_rng(seed)):
        inputs = _describe(kind, scores_in, scores_out)
        what = f"attack_roc on {inputs}"
        expected = _reference_curve(scores_in, scores_out)
        got = _student_curve(call(attack_roc, scores_in.copy(), scores_out.copy()), what)
        if _same_curve(got, expected):
            continue
        require(
            not _same_curve(got, _reference_curve(*_reversed_attack(scores_in, scores_out))),
            f"{what}: your curve is the attack run backwards. A member is predicted when its score "
            "(loss) is LOW: 'member if score <= tau'",
        )
        require(
            not _same_curve(got[:, ::-1], expected),
            f"{what}: your curve has fpr and tpr swapped: return (fpr, tpr), with fpr measured on scores_out",
        )
        stray = _first_point_off(got, expected)
        if stray is not None:
            fail(
                f"{what}: your curve passes through {_point(stray)}, which no threshold reaches on these scores. "
                "Examples with tied scores are called members together, so each distinct threshold gives "
                "one point"
            )
        missed = _first_point_off(expected, got)
        fail(
            f"{what}: the threshold attack reaches {_point(missed)}, which your curve misses; "
            "include one point per distinct score, from (0, 0) to (1, 1)"
        )


def check_attack_auc(attack_auc, seed: int = 0) -> None:
    seed_everything(seed)
    for kind, scores_in, scores_out in _score_cases(np.random.default_rng(seed)):
        what = f"attack_auc on {_describe(kind, scores_in, scores_out)}"
        expected = ref.attack_auc(scores_in, scores_out)
        got = as_float(call(attack_auc, scores_in.copy(), scores_out.copy()), what)
        if abs(got - expected) <= RATE_TOLERANCE:
            continue
        require(
            abs(got - (1 - expected)) > RATE_TOLERANCE,
            f"{what} should be {expected:.6g}, got {got:.6g}: the attack calls LOW scores members, so count "
            "the pairs where the member's score is lower than the non-member's",
        )
        tied = np.mean(scores_in[:, None] == scores_out[None, :])
        hint = (
            " Every (member, non-member) pair with equal scores counts 1/2."
            if tied > 0
            else " Count, over all (member, non-member) pairs, how often the member scores lower."
        )
        fail(f"{what} should be {expected:.6g}, got {got:.6g}.{hint}")


def _budgets(scores_out: np.ndarray, roc_fpr: np.ndarray, rng: np.random.Generator) -> list[tuple[float, bool]]:
    """(fpr budget, is it an achievable rate) pairs: midpoints between achievable rates, and exact rates when exact."""
    achievable = np.unique(roc_fpr)
    between = (achievable[:-1] + achievable[1:]) / 2
    num_out = len(scores_out)
    # k / num_out is exact in binary only for a power of two; elsewhere only the rate 0 is a safe boundary.
    boundaries = achievable if num_out & (num_out - 1) == 0 else np.zeros(1)
    chosen = [rng.permutation(values)[:BUDGETS_PER_KIND] for values in (between, boundaries)]
    return [(float(value), False) for value in chosen[0]] + [(float(value), True) for value in chosen[1]]


def check_tpr_at_fpr(tpr_at_fpr, seed: int = 0) -> None:
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    for kind, scores_in, scores_out in _score_cases(rng):
        inputs = _describe(kind, scores_in, scores_out)
        roc_fpr, roc_tpr = ref.attack_roc(scores_in, scores_out)
        reversed_scores = _reversed_attack(scores_in, scores_out)
        for budget, on_boundary in _budgets(scores_out, roc_fpr, rng):
            what = f"tpr_at_fpr({inputs}, fpr={budget:.6g})"
            expected = ref.tpr_at_fpr(scores_in, scores_out, budget)
            got = as_float(call(tpr_at_fpr, scores_in.copy(), scores_out.copy(), budget), what)
            if abs(got - expected) <= RATE_TOLERANCE:
                continue
            if on_boundary:
                below = roc_tpr[roc_fpr < budget]
                strict = below.max() if len(below) else 0.0
                require(
                    abs(got - strict) > RATE_TOLERANCE,
                    f"{what} should be {expected:.6g}, got {got:.6g}: a threshold whose false-positive rate "
                    "equals fpr exactly is allowed (false-positive rate <= fpr, not <)",
                )
            require(
                abs(got - ref.tpr_at_fpr(*reversed_scores, budget)) > RATE_TOLERANCE,
                f"{what} should be {expected:.6g}, got {got:.6g}: the attack calls LOW scores members "
                "('member if score <= tau')",
            )
            require(
                abs(got - np.interp(budget, roc_fpr, roc_tpr)) > RATE_TOLERANCE,
                f"{what} should be {expected:.6g}, got {got:.6g}: take the best true-positive rate among "
                "the ROC points themselves; do not interpolate between them",
            )
            fail(
                f"{what} should be {expected:.6g}, got {got:.6g}: take the largest true-positive rate over all "
                "thresholds whose false-positive rate is at most fpr"
            )


def _bound_grid(rng: np.random.Generator) -> list[tuple[float, float]]:
    epsilons = [0.0, 1e-8, 1e-3, 0.1, 0.5, 1.0, float(np.log(3)), 2.0, 5.0, 10.0, 30.0, 100.0]
    deltas = [0.0, 1e-10, 1e-5, 1e-3, 0.05, 0.3, 0.9]
    grid = [(epsilon, delta) for epsilon in epsilons for delta in deltas]
    grid += [(float(epsilon), float(delta)) for epsilon, delta in zip(rng.uniform(0, 10, 20), rng.uniform(0, 0.5, 20))]
    return grid


def _bound_close(got: float, expected: float) -> bool:
    return abs(got - expected) <= BOUND_ABSOLUTE_TOLERANCE + BOUND_RELATIVE_TOLERANCE * abs(expected)


def check_dp_advantage_bound(dp_advantage_bound, seed: int = 0) -> None:
    seed_everything(seed)
    for epsilon in (0.0, 0.5, 3.0):
        expected = ref.dp_advantage_bound(epsilon)
        got = as_float(call(dp_advantage_bound, epsilon), f"dp_advantage_bound({epsilon})")
        require(
            _bound_close(got, expected),
            f"dp_advantage_bound({epsilon}) should be {expected:.12g} (delta defaults to 0), got {got:.12g}",
        )
    for epsilon, delta in _bound_grid(np.random.default_rng(seed)):
        what = f"dp_advantage_bound({epsilon:.6g}, {delta:.6g})"
        expected = ref.dp_advantage_bound(epsilon, delta)
        got = as_float(call(dp_advantage_bound, epsilon, delta), what)
        if _bound_close(got, expected):
            continue
        require(
            not _bound_close(got, ref.dp_advantage_bound(epsilon)),
            f"{what} should be {expected:.12g}, got {got:.12g}: delta is part of the bound, "
            "(e^epsilon - 1 + 2 delta) / (e^epsilon + 1)",
        )
        fail(
            f"{what} should be {expected:.12g}, got {got:.12g}: the bound is (e^epsilon - 1 + 2 delta) / "
            "(e^epsilon + 1) (note the factor 2 on delta and the parentheses)"
        )
