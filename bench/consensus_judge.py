"""The consensus bench's judging (bench/consensus_cost.py): calibration tables and their
noise, the Dawid-Skene flag sweep and the issue's targets, from the runs' figures. No
database, no Django: plain functions over what the runs measured.
"""

from collections import defaultdict

import numpy as np

BANDS = [0.0, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0001]
# A band is judged when it holds this many decisions, and misses when its claim is further
# than TOLERANCE from its measured accuracy and outside that accuracy's 95% interval.
JUDGED_DECISIONS, TOLERANCE = 100, 0.02


def calibration(
    claims: list[tuple[float, bool]],
) -> tuple[list[tuple[str, float, float, int]], float]:
    """(band, mean claimed, measured, decisions) per band, and the expected calibration error."""
    table, ece = [], 0.0
    for low, high in zip(BANDS, BANDS[1:], strict=False):
        inside = [(c, ok) for c, ok in claims if low <= c < high]
        if inside:
            claimed = float(np.mean([c for c, _ in inside]))
            measured = float(np.mean([ok for _, ok in inside]))
            table.append((f"{low:.3f}-{min(high, 1):.3f}", claimed, measured, len(inside)))
            ece += len(inside) / len(claims) * abs(claimed - measured)
    return table, ece


def noise_ece(claims: list[tuple[float, bool]], draws: int = 400) -> float:
    """The 95th percentile of the ECE that perfectly calibrated decisions with these same
    claims would show (each right with the probability it claims): the part of a run's ECE
    that sampling alone explains. A run's ECE above it is error, not noise."""
    rng = np.random.default_rng(0)
    confidence = np.array([c for c, _ in claims])
    found = [
        calibration(list(zip(confidence, rng.random(len(confidence)) < confidence, strict=True)))[1]
        for _ in range(draws)
    ]
    return float(np.quantile(found, 0.95))


def band_interval(measured: float, count: int) -> tuple[float, float]:
    """The Wilson 95% interval of a band's measured accuracy."""
    z = 1.96
    centre = (measured + z * z / (2 * count)) / (1 + z * z / count)
    half = z * np.sqrt(measured * (1 - measured) / count + z * z / (4 * count * count))
    return centre - half / (1 + z * z / count), centre + half / (1 + z * z / count)


def band_verdict(claimed: float, measured: float, count: int) -> str:
    """'' for a band too small to judge; 'met'; 'noise' (further than TOLERANCE but inside
    the interval); 'MISS over' / 'MISS under' (the claim above or below the accuracy)."""
    if count < JUDGED_DECISIONS:
        return ""
    low, high = band_interval(measured, count)
    if abs(claimed - measured) <= TOLERANCE:
        return "met"
    if low <= claimed <= high:
        return "noise"
    return "MISS over" if claimed > measured else "MISS under"


def calibration_report(pooled: dict[str, list[tuple[float, bool]]]) -> list[str]:
    """Each crowd and strategy's bands with their verdicts, and a count of the misses."""
    lines, judged, misses = [], 0, []
    for name, claims in pooled.items():
        if not claims:
            continue
        table, ece = calibration(claims)
        lines.append(f"crowd {name}: ECE {ece:.4f}, {len(claims)} decisions")
        for band, claimed, measured, count in table:
            low, high = band_interval(measured, count)
            verdict = band_verdict(claimed, measured, count)
            judged += bool(verdict)
            if verdict.startswith("MISS"):
                misses.append(f"{name} {band} {claimed:.3f} vs {measured:.3f} ({verdict[5:]})")
            lines.append(
                f"  {band}  {claimed:.4f}  {measured:.4f} ({low:.3f}-{high:.3f})  {count:6d}"
                f"  {verdict}"
            )
    lines.append(f"bands judged ({JUDGED_DECISIONS}+ decisions): {judged}, missed: {len(misses)}")
    lines += [f"  {miss}" for miss in misses]
    return lines


# (DS's probability for its answer at least, the calibrated posterior's for the decided one
# now at most); 1.0: DS alone.
FLAG_SWEEP = [(p, decided) for p in (0.9, 0.99, 0.999) for decided in (1.0, 0.8, 0.5)]


def flag_sweep(ds: list[tuple[bool, float, float, int, float]], wrong: int) -> str:
    """DS flags (true/false) and recall (true flags over wrong decisions) at each threshold
    of FLAG_SWEEP, on the decisions with two votes or more."""
    cells = []
    for confidence, decided_max in FLAG_SWEEP:
        flags = [right for right, p, _, _, now in ds if p >= confidence and now <= decided_max]
        true = sum(1 for right in flags if not right)
        cells.append(
            f"{confidence}/{decided_max}: {true}/{len(flags) - true} r{true / max(wrong, 1):.2f}"
        )
    return "  ".join(cells)


# (crowd, classes, model, strategy) -> [votes, decided, correct], summed over seeds.
Figures = dict[tuple[str, int, str, str], list[int]]


def _cell(figures: list[int]) -> str:
    votes, decided, correct = figures
    return f"{votes / max(decided, 1):.2f} votes at {correct / max(decided, 1):.3f}"


def on_both(mine: list[bool | None], theirs: list[bool | None]) -> str:
    """Two runs' accuracy on the images both decided (a diagnostic: a rule that decides the
    hard images another leaves disputed is judged on more of them)."""
    both = [(a, b) for a, b in zip(mine, theirs, strict=True) if a is not None and b is not None]
    if not both:
        return "no image decided by both"
    right = sum(a for a, _ in both), sum(b for _, b in both)
    return f"on the {len(both)} both decided: {right[0]} vs {right[1]} right"


def target_summary(
    results: Figures, per_image: dict[tuple[str, int, str, str], list[bool | None]]
) -> list[str]:
    """The issue's targets that compare runs: the weak model never below no model; fewer
    votes than fixed 3-vote majority at equal or better accuracy (no model); the strong
    model on crowd (c). Pooled over seeds; `per_image`: each run's decisions by image, for
    the misses' diagnostic (on_both())."""
    lines = ["weak model >= no model (accuracy, same crowd, classes and target):"]
    met = total = 0
    for (kind, k, model, strategy), figures in sorted(results.items()):
        plain = results.get((kind, k, "none", strategy))
        if not model.startswith("weak") or plain is None:
            continue
        total += 1
        mine, theirs = figures[2] / max(figures[1], 1), plain[2] / max(plain[1], 1)
        met += mine >= theirs
        if mine < theirs:
            wrong = figures[1] - figures[2], plain[1] - plain[2]
            both = on_both(
                per_image[kind, k, model, strategy], per_image[kind, k, "none", strategy]
            )
            lines.append(
                f"  MISS {kind}{k} {model} {strategy}: {mine:.4f} vs {theirs:.4f}"
                f" ({wrong[0]} vs {wrong[1]} wrong of {figures[1]} / {plain[1]});"
                f" {both}"
            )
    lines.append(f"  met {met} of {total}")
    lines.append("fewer votes than fixed 3-vote majority at equal or better accuracy, no model:")
    by_crowd: dict[tuple[str, int], list[tuple[str, list[int]]]] = defaultdict(list)
    for (kind, k, model, strategy), figures in results.items():
        if model == "none":
            by_crowd[kind, k].append((strategy, figures))
    met = total = 0
    for (kind, k), runs in sorted(by_crowd.items()):
        fixed = dict(runs).get("majority 3 votes")
        if fixed is None:
            continue
        total += 1
        rate = fixed[0] / max(fixed[1], 1), fixed[2] / max(fixed[1], 1)
        better = [
            strategy
            for strategy, f in runs
            if strategy != "majority 3 votes"
            and f[0] / max(f[1], 1) < rate[0]
            and f[2] / max(f[1], 1) >= rate[1]
        ]
        met += bool(better)
        others = "; ".join(f"{s} {_cell(f)}" for s, f in runs if s != "majority 3 votes")
        lines.append(
            f"  {'met ' if better else 'MISS'} {kind}{k}: fixed-3 {_cell(fixed)}; {others}"
        )
        if not better:
            for strategy, _ in runs:
                if strategy != "majority 3 votes":
                    both = on_both(
                        per_image[kind, k, "none", strategy],
                        per_image[kind, k, "none", "majority 3 votes"],
                    )
                    lines.append(f"       {strategy} vs fixed-3 {both}")
    lines.append(f"  met {met} of {total}")
    lines.append(">= 99% accuracy at <= 2.5 human votes per decided image, strong model, crowd c:")
    for (kind, k, model, strategy), figures in sorted(results.items()):
        if kind == "c" and model.startswith("strong"):
            ok = figures[2] >= 0.99 * figures[1] and figures[0] <= 2.5 * figures[1]
            lines.append(f"  {'met ' if ok else 'MISS'} c{k} {model} {strategy}: {_cell(figures)}")
    return lines
