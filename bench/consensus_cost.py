"""Honest consensus, measured (issue 16): votes per decided image, accuracy and calibration of
the consensus rules on simulated crowds, through the service's own database path.

Each run makes a project in a fresh SQLite database (labels, volunteers, images, gold images,
and for a model its version and one suggestion per image), then votes image after image with
annotate.services.voting.vote_submit (consensus, reliability and confusion counts as in
production), serving gold at the project's schedule (annotate.services.reliability.gold_due),
and re-aggregates (annotate.services.aggregation) every 100 images and at the end.
Every run of a crowd sees the same volunteers, voter order and answers.

Crowds: (a) one-coin: accuracies 0.55-0.95, mistakes spread evenly; (b) class confusion: 70% of
a volunteer's mistakes go to the class's look-alike; (c) (b) plus 5% spammers and a volunteer
who answers "none of these" 10% of the time. Models: none; weak (top-1 about 0.75) and strong
(about 0.98), each calibrated or overconfident (claims a quarter of the error it makes).

    python bench/consensus_cost.py                      # 500 images a run, seed 1
    python bench/consensus_cost.py --seeds 1,2          # pooled over two seeds
    python bench/consensus_cost.py --full               # 2,000 images a run
    python bench/consensus_cost.py --crowds c --classes 10 --models strong --images 200

Calibration is judged per confidence band, pooled over classes, models and seeds: a band of
100 decisions or more misses when its claim lies outside the 95% interval of its measured
accuracy *and* more than 0.02 from it (at 100 decisions sampling alone moves the measured
accuracy by about 0.02, so the interval says whether a gap is error or noise).
"""

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
os.environ.pop("DATABASE_URL", None)  # a fresh SQLite database of its own, never a real one
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="consensus-bench-")
import django

django.setup()

from consensus_judge import (  # noqa: E402
    calibration,
    calibration_report,
    flag_sweep,
    noise_ece,
    target_summary,
)
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from annotate.models import (  # noqa: E402
    ActiveModel,
    Assignment,
    Decision,
    Image,
    Label,
    ModelVersion,
    Project,
    Suggestion,
    User,
    Vote,
)
from annotate.services import aggregation, reliability, voting  # noqa: E402

VOLUNTEERS = 30
MAX_VOTES = 6
GOLD_IMAGES = 60
HOLDOUT = 500  # the model's held-out images
NONE = -1  # "none of these" among simulated answers


class Crowd:
    def __init__(self, kind: str, k: int, seed: int):
        rng = np.random.default_rng([seed, k, ord(kind)])
        self.kind, self.k, self.seed = kind, k, seed
        self.accuracy = rng.uniform(0.55, 0.95, VOLUNTEERS)
        self.spammer = np.zeros(VOLUNTEERS, dtype=bool)
        self.none_sayer = -1
        if kind == "c":
            self.spammer[-max(1, round(0.05 * VOLUNTEERS)) :] = True
            self.none_sayer = 0
        self.partner = np.arange(k) ^ 1
        self.partner[self.partner >= k] = k - 1

    def answer(self, volunteer: int, item: int, truth: int) -> int:
        """The answer `volunteer` gives `item` (the same in every run)."""
        rng = np.random.default_rng([self.seed, item, volunteer, 1])
        if self.spammer[volunteer]:
            return int(rng.integers(0, self.k))
        if volunteer == self.none_sayer and rng.random() < 0.1:
            return NONE
        if rng.random() < self.accuracy[volunteer]:
            return truth
        if self.kind != "a" and rng.random() < 0.7:
            return int(self.partner[truth])
        return int(rng.choice([c for c in range(self.k) if c != truth]))


def model_guess(kind: str, crowd: Crowd, item: int, truth: int) -> tuple[int, float]:
    """The model's top label and claimed confidence for an item."""
    rng = np.random.default_rng([crowd.seed, item, 2])
    if kind.startswith("strong"):
        confidence = float(np.clip(1 - rng.exponential(0.02), 0.5, 0.999))
    else:
        confidence = float(rng.uniform(0.5, 1.0))
    right = rng.random() < confidence
    label = (
        truth
        if right
        else int(crowd.partner[truth] if rng.random() < 0.5 else rng.integers(0, crowd.k))
    )
    if label == truth and not right:
        label = int(crowd.partner[truth])
    if kind.endswith("over"):
        confidence = 1 - (1 - confidence) / 4
    return label, confidence


def setup(name: str, crowd: Crowd, n_images: int, model: str, policy: dict):
    project = Project.objects.create(name=name, **policy)
    labels = Label.objects.bulk_create(
        Label(project=project, wnid=f"c{i}", name=f"class {i}", position=i) for i in range(crowd.k)
    )
    label_ids = [label.pk for label in labels]
    users = User.objects.bulk_create(User(username=f"{name}-v{i}") for i in range(VOLUNTEERS))
    truth = np.random.default_rng([crowd.seed, 3]).integers(0, crowd.k, n_images + GOLD_IMAGES)

    def image(i: int, gold: bool) -> Image:
        return Image(
            project=project,
            file=f"bench/{name}/{i}.jpg",
            original_name=f"{i}.jpg",
            sha256=f"{i:064d}",
            size_bytes=1,
            format="JPEG",
            width=1,
            height=1,
            is_gold=gold,
            gold_label_id=label_ids[truth[i]] if gold else None,
            state=Image.State.CONSENSUS if gold else Image.State.OPEN,
        )

    images = Image.objects.bulk_create(image(i, False) for i in range(n_images))
    gold = Image.objects.bulk_create(image(n_images + g, True) for g in range(GOLD_IMAGES))
    if model != "none":
        # Its held-out top-1, as training measures it on verified labels it did not see.
        held_out = range(n_images + GOLD_IMAGES, n_images + GOLD_IMAGES + HOLDOUT)
        holdout_truth = np.random.default_rng([crowd.seed, 5]).integers(0, crowd.k, HOLDOUT)
        top1 = float(
            np.mean(
                [
                    model_guess(model, crowd, item, int(t))[0] == t
                    for item, t in zip(held_out, holdout_truth, strict=True)
                ]
            )
        )
        version = ModelVersion.objects.create(
            project=project,
            arch="bench",
            classes=label_ids,
            file="bench",
            weights_source="bench",
            device="cpu",
            train_size=0,
            holdout_size=HOLDOUT,
            training_seconds=0,
            top1=top1,
        )
        ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
        suggestions = []
        for i, img in enumerate(images):
            label, confidence = model_guess(model, crowd, i, int(truth[i]))
            suggestions.append(
                Suggestion(
                    image=img,
                    model_version=version,
                    label_id=label_ids[label],
                    confidence=confidence,
                    probabilities={str(label_ids[label]): confidence},
                )
            )
        Suggestion.objects.bulk_create(suggestions)
    return project, label_ids, users, images, gold, truth


def vote(project, user, image_id, label_id) -> Image:
    assignment = Assignment.objects.create(
        image_id=image_id, user=user, expires_at=timezone.now() + timedelta(hours=1)
    )
    return voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label_id)[1]


def run(crowd: Crowd, n_images: int, model: str, policy: dict, name: str) -> dict:
    project, label_ids, users, images, gold, truth = setup(name, crowd, n_images, model, policy)
    key = [*label_ids]

    def label_of(answer: int) -> int | None:
        return None if answer == NONE else key[answer]

    gold_rng = random.Random(crowd.seed)
    next_gold = [0] * VOLUNTEERS
    for index, img in enumerate(images):
        order = np.random.default_rng([crowd.seed, index, 4]).permutation(VOLUNTEERS)
        for volunteer in order[:MAX_VOTES]:
            user = users[volunteer]
            if next_gold[volunteer] < GOLD_IMAGES and reliability.gold_due(
                project=project, user=user, rng=gold_rng
            ):
                g = next_gold[volunteer]
                next_gold[volunteer] += 1
                answer = crowd.answer(volunteer, n_images + g, int(truth[n_images + g]))
                vote(project, user, gold[g].pk, label_of(answer))
            answer = crowd.answer(volunteer, index, int(truth[index]))
            if vote(project, user, img.pk, label_of(answer)).state != Image.State.OPEN:
                break
        # The hourly re-aggregation (every 100 images here) and the young projects' one
        # (annotate.young_projects_reaggregate, once the decided images double).
        if (index + 1) % 100 == 0 or (
            project.mode == Project.Mode.DYNAMIC and aggregation.reaggregation_due(project=project)
        ):
            aggregation.project_reaggregate(project=project)
    report = aggregation.project_reaggregate(project=project)
    return measure(project, images, truth, label_ids, report)


def measure(project, images, truth, label_ids, report) -> dict:
    true_label = {img.pk: label_ids[truth[i]] for i, img in enumerate(images)}
    voted = set(Vote.objects.filter(image__project=project).values_list("image_id", "label_id"))
    decisions = [
        (image_id, label_id, confidence, rule, (image_id, label_id) in voted)
        for image_id, label_id, confidence, rule in Decision.objects.filter(
            image__project=project, is_current=True, image__is_gold=False
        ).values_list("image_id", "label_id", "confidence", "rule")
    ]
    flagged = set(
        Image.objects.filter(
            project=project, flagged_for_review=True, flag_reason__startswith="Dawid-Skene"
        ).values_list("id", flat=True)
    )
    right = {image_id: label_id == true_label[image_id] for image_id, label_id, *_ in decisions}
    shares = list(
        Image.objects.filter(
            project=project, is_gold=False, decisions__is_current=True
        ).values_list("model_share", "model_decided")
    )
    return {
        "images": len(images),
        # Each image's decision right (True), wrong (False) or none (None), in image order:
        # to compare two runs on the images both decided.
        "per_image": [right.get(img.pk) for img in images],
        "votes": Vote.objects.filter(image__project=project).count(),
        "decided": len(decisions),
        "correct": sum(right.values()),
        "disputed": Image.objects.filter(project=project, state=Image.State.DISPUTED).count(),
        "claims": [
            (confidence, right[image_id])
            for image_id, _, confidence, rule, _ in decisions
            if rule == Decision.Rule.DYNAMIC
        ],
        "flags_true": sum(1 for i in flagged if not right.get(i, True)),
        "flags_false": sum(1 for i in flagged if right.get(i, False)),
        "wrong": sum(1 for ok in right.values() if not ok),
        "no_human": sum(1 for *_, human in decisions if not human),
        "model_decided": sum(1 for _, decided in shares if decided),
        "model_share": float(np.mean([s for s, _ in shares])) if shares else 0.0,
        "iterations": report.iterations,
        # Every decision DS disagrees with: (decision right, DS's probability for its answer,
        # its probability for the decided one, human votes, the calibrated posterior's for the
        # decided one at the end), for the flag rule's sweep.
        "ds": [
            (right[image_id], *report.disagreements[image_id])
            for image_id in report.disagreements
            if image_id in right
        ],
    }


DYNAMIC = {"mode": "dynamic", "min_votes": 1, "max_votes": MAX_VOTES}
STRATEGIES = {
    # Fixed 3 votes: 2 of 3 decide, 1-1-1 is disputed; no gold (the rule reads no reliability).
    "majority 3 votes": {
        "mode": "majority",
        "min_votes": 3,
        "max_votes": 3,
        "agreement": 0.5,
        "gold_rate": 0.0,
    },
    # The dynamic rule with the project's default gold schedule.
    "dynamic 0.90": {**DYNAMIC, "target_confidence": 0.9},
    "dynamic 0.95": {**DYNAMIC, "target_confidence": 0.95},
    "dynamic 0.99": {**DYNAMIC, "target_confidence": 0.99},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--full", action="store_true", help="2,000 images a run")
    parser.add_argument("--crowds", default="abc")
    parser.add_argument("--classes", default="10,100")
    parser.add_argument("--models", default="none,weak,weak-over,strong,strong-over")
    parser.add_argument("--seeds", default="1", help="comma-separated; the tables pool them")
    parser.add_argument(
        "--strategies",
        default="majority 3 votes,dynamic 0.90,dynamic 0.95",
        help=f"comma-separated, of: {', '.join(STRATEGIES)}",
    )
    args = parser.parse_args()
    chosen = {name: STRATEGIES[name] for name in args.strategies.split(",")}
    n_images = 2000 if args.full else args.images
    seeds = [int(seed) for seed in args.seeds.split(",")]
    call_command("migrate", verbosity=0)
    logging.getLogger("annotate").setLevel(logging.WARNING)
    pooled: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    ds_pooled: dict[str, list[tuple[bool, float, float, int, float]]] = defaultdict(list)
    wrong_pooled: dict[str, int] = defaultdict(int)
    over_noise: dict[str, list[str]] = defaultdict(list)
    results: dict[tuple[str, int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    per_image: dict[tuple[str, int, str, str], list[bool | None]] = defaultdict(list)
    print(
        f"{'crowd':5s} {'K':>3s} {'model':11s} {'strategy':24s} {'seed':>4s} {'votes/dec':>9s}"
        f" {'accuracy':>8s} {'ECE':>6s} {'disputed':>8s} {'DS flags T/F':>12s} {'no-human':>8s}"
        f" {'model-dec':>9s} {'DS it':>5s} {'s':>4s} {'ECE noise95':>11s}"
    )
    started = time.time()
    for seed in seeds:
        for kind in args.crowds:
            for k in (int(x) for x in args.classes.split(",")):
                crowd = Crowd(kind, k, seed)
                for model in args.models.split(","):
                    for strategy, policy in chosen.items():
                        if strategy.startswith("majority") and model != "none":
                            continue  # the model plays no part in the majority rule
                        t0 = time.time()
                        name = f"{kind}{k}-{model}-{strategy}-{seed}"
                        r = run(crowd, n_images, model, policy, name)
                        table, ece = calibration(r["claims"])
                        noise = noise_ece(r["claims"]) if r["claims"] else float("nan")
                        if r["claims"] and ece > 0.02:
                            verdict = "noise" if ece <= noise else "ERROR"
                            mean_claim = float(np.mean([c for c, _ in r["claims"]]))
                            measured = float(np.mean([ok for _, ok in r["claims"]]))
                            way = "over" if mean_claim > measured else "under"
                            over_noise[verdict].append(
                                f"{kind}{k} {model} {strategy} {seed} {ece:.3f} {way}"
                            )
                        pooled[f"{kind} {strategy}"] += r["claims"]
                        ds_pooled[kind] += r["ds"]
                        wrong_pooled[kind] += r["wrong"]
                        total = results[kind, k, model, strategy]
                        for i, field in enumerate(("votes", "decided", "correct")):
                            total[i] += r[field]
                        per_image[kind, k, model, strategy] += r["per_image"]
                        print(
                            f"{kind:5s} {k:3d} {model:11s} {strategy:24s} {seed:4d}"
                            f" {r['votes'] / max(r['decided'], 1):9.2f}"
                            f" {r['correct'] / max(r['decided'], 1):8.3f}"
                            f" {ece if r['claims'] else float('nan'):6.3f}"
                            f" {r['disputed'] / r['images']:8.1%}"
                            f" {r['flags_true']:5d}/{r['flags_false']:<6d}"
                            f" {r['no_human']:8d} {r['model_decided']:9d} {r['iterations']:5d}"
                            f" {time.time() - t0:4.0f} {noise:11.3f}",
                            flush=True,
                        )
    print(
        "\nruns with ECE above 0.02: within what sampling alone gives a calibrated rule"
        " (its 95th percentile, 'ECE noise95'), or above it; over/under: the mean claim above"
        " or below the accuracy"
    )
    for verdict in ("noise", "ERROR"):
        print(f"  {verdict}: {len(over_noise[verdict])}  {'; '.join(over_noise[verdict])}")
    print(
        "\nDS flags by threshold (DS's probability for its answer at least / the calibrated"
        " posterior's for the decided one at most; 1.0: DS alone): true/false, recall over the"
        " crowd's wrong decisions"
    )
    for kind, ds in ds_pooled.items():
        print(f"  crowd {kind} ({wrong_pooled[kind]} wrong): {flag_sweep(ds, wrong_pooled[kind])}")
    default = Project._meta.get_field("flag_confidence").default
    print(f"  (the service's default: {default}/{aggregation.FLAG_DECIDED_MAX})")
    print(
        "\ncalibration, pooled over classes, models and seeds: band, claimed, measured (its 95%"
        " interval), decisions, verdict (a miss: further than 0.02 and outside the interval)"
    )
    print("\n".join(calibration_report(pooled)))
    print("\ntargets, pooled over seeds:")
    print("\n".join(target_summary(dict(results), dict(per_image))))
    took = time.time() - started
    print(f"\n{n_images} images a run, {VOLUNTEERS} volunteers, seeds {args.seeds}, {took:.0f} s")


if __name__ == "__main__":
    main()
