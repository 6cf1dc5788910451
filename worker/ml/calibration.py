"""Temperature scaling and how well it holds: expected calibration error and a reliability
table, estimated by cross-validation so that the images that fit the temperature never also
grade it."""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# Confidence bands of the reliability table: ten of equal width.
BANDS = 10


@dataclass
class Calibration:
    temperature: float
    # Expected calibration error (share-weighted |claimed - measured| over the bands).
    ece: float
    # [{"low", "high", "claimed", "measured", "count"}] for each band holding predictions.
    reliability: list[dict[str, float]] = field(default_factory=list)
    # How the figures were obtained: "holdout" or "cross-validation (k folds)".
    method: str = "holdout"
    # Images the temperature was fitted on and graded with.
    size: int = 0


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature scaling (Guo et al., 2017): the T minimising the NLL of softmax(z/T), so
    that a confidence of 0.9 is right about 90% of the time. Argmax, hence accuracy, is
    unchanged."""
    known = targets >= 0
    if known.sum() < 2:
        return 1.0
    logits, targets = logits[known].double(), targets[known]
    log_t = torch.zeros(1, dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    # A small set that the model gets all right drives T toward 0 (ever sharper,
    # overconfident probabilities); sharpening beyond 2x is never trusted.
    return float(log_t.detach().exp().clamp(0.5, 20.0))


def reliability(
    probabilities: torch.Tensor, targets: torch.Tensor
) -> tuple[float, list[dict[str, float]]]:
    """(ECE, reliability table) of the top-1 confidence of `probabilities` against `targets`."""
    known = targets >= 0
    probabilities, targets = probabilities[known], targets[known]
    if len(targets) == 0:
        return 0.0, []
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).double()
    band = (confidence.double() * BANDS).long().clamp(max=BANDS - 1)
    table: list[dict[str, float]] = []
    ece = 0.0
    for index in range(BANDS):
        inside = band == index
        count = int(inside.sum())
        if not count:
            continue
        claimed = float(confidence[inside].double().mean())
        measured = float(correct[inside].mean())
        ece += count / len(targets) * abs(claimed - measured)
        table.append(
            {
                "low": index / BANDS,
                "high": (index + 1) / BANDS,
                "claimed": round(claimed, 4),
                "measured": round(measured, 4),
                "count": count,
            }
        )
    return ece, table


def calibrate(
    logits: torch.Tensor, targets: torch.Tensor, *, folds: int = 5, method: str = "holdout"
) -> Calibration:
    """The temperature fitted on all of (logits, targets), and its ECE and reliability table
    estimated by `folds`-fold cross-validation: each fold is graded with the temperature
    fitted on the others, so a small set does not grade itself."""
    known = targets >= 0
    logits, targets = logits[known], targets[known]
    temperature = fit_temperature(logits, targets)
    count = len(targets)
    folds = min(folds, count)
    if folds < 2:
        ece, table = reliability(torch.softmax(logits / temperature, dim=1), targets)
        return Calibration(temperature, ece, table, method, count)
    calibrated = torch.empty_like(logits)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    for fold in range(folds):
        graded = order[fold::folds]
        fitting = torch.ones(count, dtype=torch.bool)
        fitting[graded] = False
        fold_t = fit_temperature(logits[fitting], targets[fitting])
        calibrated[graded] = torch.softmax(logits[graded] / fold_t, dim=1)
    ece, table = reliability(calibrated, targets)
    return Calibration(temperature, ece, table, method, count)
