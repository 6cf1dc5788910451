"""Votes per correct label: consensus rules side by side on the same simulated crowd.

Runs the project's own consensus rules (annotate.services.consensus: majority_outcome,
one_coin_posterior and dynamic_outcome; annotate.services.reliability: the accuracy estimate
and the gold schedule) on a simulated crowd, and Dawid-Skene (crowd-kit, and our NumPy EM) on
the 5-vote data of the same crowd. Every strategy sees the same volunteers, the same images,
and the same answer each volunteer would give each image.

    python bench/consensus_cost.py [--images 2000] [--classes 10] [--seed 1]
"""

import argparse
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
os.environ.setdefault("DATA_DIR", "/tmp/consensus-bench")
import django

django.setup()

from annotate.models import AnnotatorStats, Image, Project  # noqa: E402
from annotate.services.aggregation import dawid_skene  # noqa: E402
from annotate.services.consensus import dynamic_outcome, majority_outcome, one_coin_posterior  # noqa: E402
from annotate.services.reliability import estimated_accuracy, gold_rate_for  # noqa: E402


class Crowd:
    """Volunteers with accuracies in [0.55, 0.95], a few spammers, and confusable classes."""

    def __init__(self, rng, n_images, n_classes, n_volunteers=60, n_spammers=4):
        self.rng = rng
        self.k = n_classes
        self.truth = rng.integers(0, n_classes, n_images)
        self.accuracy = np.concatenate(
            [rng.uniform(0.55, 0.95, n_volunteers), np.full(n_spammers, 1.0 / n_classes)]
        )
        self.spammer = np.arange(len(self.accuracy)) >= n_volunteers
        # Classes 2i and 2i+1 look alike: most honest mistakes go to the look-alike.
        self.lookalike = np.arange(n_classes) ^ 1
        self.lookalike[self.lookalike >= n_classes] = n_classes - 1
        self._answers: dict[tuple[int, int], int] = {}

    @property
    def n_volunteers(self) -> int:
        return len(self.accuracy)

    def answer(self, volunteer: int, image: int, truth: int | None = None) -> int:
        """The answer `volunteer` gives `image` (the same every time it is asked)."""
        key = (volunteer, image)
        if key not in self._answers:
            true = self.truth[image] if truth is None else truth
            if self.spammer[volunteer]:
                given = int(self.rng.integers(0, self.k))
            elif self.rng.random() < self.accuracy[volunteer]:
                given = int(true)
            elif self.rng.random() < 0.7:
                given = int(self.lookalike[true])
            else:
                given = int(self.rng.choice([c for c in range(self.k) if c != true]))
            self._answers[key] = given
        return self._answers[key]


MAX_VOTES = 6


def voter_order(rng, crowd, n_images):
    """For each image, the order in which volunteers would come to it, and their answers drawn
    up front, so that every strategy sees exactly the same votes."""
    orders = [rng.permutation(crowd.n_volunteers)[:MAX_VOTES] for _ in range(n_images)]
    for image, order in enumerate(orders):
        for volunteer in order:
            crowd.answer(volunteer, image)
    return orders


def run_majority(crowd, orders, votes_needed):
    decided, correct, votes_used, disputed = 0, 0, 0, 0
    for image, order in enumerate(orders):
        counts = Counter()
        for volunteer in order[:votes_needed]:
            counts[crowd.answer(volunteer, image)] += 1
        votes_used += votes_needed
        outcome = majority_outcome(
            counts, min_votes=votes_needed, max_votes=votes_needed, agreement=0.5
        )
        if outcome.state == Image.State.CONSENSUS:
            decided += 1
            correct += int(outcome.label_id == crowd.truth[image])
        else:
            disputed += 1
    return {
        "decided": decided,
        "correct": correct,
        "votes": votes_used,
        "gold": 0,
        "disputed": disputed,
    }


def run_dynamic(crowd, orders, rng, *, min_votes, max_votes, target, model_prior, gold_project):
    """Images are decided one after another, so volunteers' estimated accuracies (gold answers
    and agreement with decisions, as the service keeps them) improve as the run goes on."""
    k = crowd.k
    keys = list(range(k))
    stats = {
        v: {"votes": 0, "gold_votes": 0, "gold_correct": 0, "decided_votes": 0, "agreed_votes": 0}
        for v in range(crowd.n_volunteers)
    }
    estimate = {
        v: estimated_accuracy(gold_votes=0, gold_correct=0, decided_votes=0, agreed_votes=0)
        for v in stats
    }
    decided = correct = votes_used = gold_used = disputed = 0
    gold_image = 10**9  # ids for gold items, apart from the real images
    for image, order in enumerate(orders):
        if model_prior:
            # A calibrated model: top answer right with probability equal to its confidence.
            confidence = rng.uniform(0.3, 0.99)
            top = (
                crowd.truth[image]
                if rng.random() < confidence
                else rng.choice([c for c in keys if c != crowd.truth[image]])
            )
            prior = np.full(k, (1 - confidence) / (k - 1))
            prior[top] = confidence
        else:
            prior = np.full(k, 1.0 / k)
        answers, accuracies, voters = [], [], []
        outcome = None
        for volunteer in order[:max_votes]:
            record = AnnotatorStats(
                votes=stats[volunteer]["votes"], estimated_accuracy=estimate[volunteer]
            )
            if rng.random() < gold_rate_for(project=gold_project, stats=record):
                gold_image += 1  # a gold item: its answer is drawn now, apart from the images
                truth = int(rng.integers(0, k))
                right = crowd.answer(volunteer, gold_image, truth=truth) == truth
                stats[volunteer]["gold_votes"] += 1
                stats[volunteer]["gold_correct"] += int(right)
                stats[volunteer]["votes"] += 1
                gold_used += 1
            answers.append(crowd.answer(volunteer, image))
            accuracies.append(estimate[volunteer])
            voters.append(volunteer)
            stats[volunteer]["votes"] += 1
            posterior = one_coin_posterior(answers, accuracies, prior)
            outcome = dynamic_outcome(
                posterior,
                keys,
                votes=len(answers),
                min_votes=min_votes,
                max_votes=max_votes,
                target_confidence=target,
            )
            if outcome.state != Image.State.OPEN:
                break
        votes_used += len(answers)
        if outcome.state == Image.State.CONSENSUS:
            decided += 1
            correct += int(outcome.label_id == crowd.truth[image])
            for volunteer, answer in zip(voters, answers, strict=False):
                stats[volunteer]["decided_votes"] += 1
                stats[volunteer]["agreed_votes"] += int(answer == outcome.label_id)
        else:
            disputed += 1
        for volunteer in voters:
            s = stats[volunteer]
            estimate[volunteer] = estimated_accuracy(
                gold_votes=s["gold_votes"],
                gold_correct=s["gold_correct"],
                decided_votes=s["decided_votes"],
                agreed_votes=s["agreed_votes"],
            )
    return {
        "decided": decided,
        "correct": correct,
        "votes": votes_used,
        "gold": gold_used,
        "disputed": disputed,
    }


def five_vote_data(crowd, orders):
    items, workers, answers = [], [], []
    for image, order in enumerate(orders):
        for volunteer in order[:5]:
            items.append(image)
            workers.append(volunteer)
            answers.append(crowd.answer(volunteer, image))
    return np.array(items), np.array(workers), np.array(answers)


def run_dawid_skene_numpy(crowd, orders):
    items, workers, answers = five_vote_data(crowd, orders)
    result = dawid_skene(
        items,
        workers,
        answers,
        n_items=len(orders),
        n_workers=crowd.n_volunteers,
        n_classes=crowd.k,
    )
    labels = result.posteriors.argmax(axis=1)
    return {
        "decided": len(orders),
        "correct": int((labels == crowd.truth).sum()),
        "votes": len(items),
        "gold": 0,
        "disputed": 0,
    }


def run_dawid_skene_crowdkit(crowd, orders):
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError:
        return None
    items, workers, answers = five_vote_data(crowd, orders)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = DawidSkene(n_iter=100).fit_predict(
            pd.DataFrame({"task": items, "worker": workers, "label": answers})
        )
    labels = labels.sort_index().to_numpy()
    return {
        "decided": len(orders),
        "correct": int((labels == crowd.truth).sum()),
        "votes": len(items),
        "gold": 0,
        "disputed": 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    crowd = Crowd(rng, args.images, args.classes)
    orders = voter_order(rng, crowd, args.images)
    gold = Project(gold_rate=0.2, gold_rate_min=0.02, gold_half_life=20, reliability_threshold=0.6)
    no_gold = Project(gold_rate=0.0)

    def dynamic(target, prior, gold_project, min_votes=2):
        return run_dynamic(
            crowd,
            orders,
            np.random.default_rng(args.seed + 100),
            min_votes=min_votes,
            max_votes=MAX_VOTES,
            target=target,
            model_prior=prior,
            gold_project=gold_project,
        )

    rows = [
        ("majority, fixed 3 votes", run_majority(crowd, orders, 3)),
        ("majority, fixed 5 votes", run_majority(crowd, orders, 5)),
        ("dynamic 0.95, no prior, no gold", dynamic(0.95, False, no_gold)),
        ("dynamic 0.95, no prior, gold 20%->2%", dynamic(0.95, False, gold)),
        ("dynamic 0.98, no prior, gold 20%->2%", dynamic(0.98, False, gold)),
        ("dynamic 0.95, model prior, gold", dynamic(0.95, True, gold, min_votes=1)),
        ("dynamic 0.98, model prior, gold", dynamic(0.98, True, gold, min_votes=1)),
        ("Dawid-Skene on 5 votes (NumPy EM)", run_dawid_skene_numpy(crowd, orders)),
    ]
    crowdkit = run_dawid_skene_crowdkit(crowd, orders)
    if crowdkit is not None:
        rows.append(("Dawid-Skene on 5 votes (crowd-kit)", crowdkit))

    honest = crowd.accuracy[~crowd.spammer]
    print(
        f"crowd: {args.images} images, {args.classes} classes, {(~crowd.spammer).sum()} volunteers "
        f"(accuracy {honest.min():.2f}-{honest.max():.2f}, mean {honest.mean():.2f}), "
        f"{crowd.spammer.sum()} spammers, look-alike class pairs, seed {args.seed}"
    )
    print(
        f"{'strategy':40s} {'votes/img':>9s} {'+gold':>6s} {'votes/decided':>13s} {'accuracy':>9s} {'disputed':>9s}"
    )
    for name, r in rows:
        per_image = r["votes"] / args.images
        per_decided = (r["votes"] + r["gold"]) / max(r["decided"], 1)
        accuracy = r["correct"] / max(r["decided"], 1)
        print(
            f"{name:40s} {per_image:9.2f} {r['gold'] / args.images:6.2f} {per_decided:13.2f} "
            f"{accuracy:9.3f} {r['disputed'] / args.images:9.1%}"
        )


if __name__ == "__main__":
    main()
