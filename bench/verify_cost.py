"""Votes per accepted image: verifying candidates per synset, against ImageNet's own ways.

A simulated crowd (honest volunteers of accuracy 0.55-0.95 and a few spammers answering yes at
random rates) verifies candidate pools for many synsets; a synset's share of right candidates is
drawn from 10% (search results) to 80% (a good model's top-k). With --near-miss-share, some wrong
candidates are near misses (of the synset's look-alike class), on which every honest volunteer
is less sure: their votes are then not independent given the truth alone (a stress test).

Every scheme sees the same images, the same volunteers coming to each image in the same order,
and the same answer from each of them:

- bayes: annotate.services.verification_consensus as the service runs it. Each voter's
  sensitivity and specificity come from gold answers and from their votes rated against what
  the earlier votes on the same item had settled; each synset's prior is the expected share of
  right candidates among those voted on, shrunk toward the project's share; items are asked one
  vote at a time until the posterior reaches the target (accepted) or 1 - target (rejected), or
  are disputed at max_votes (a reviewer settles them: that feeds the prior, never precision);
- fixed-10: ten votes on every item, accepted on six or more yes;
- imagenet-table: ImageNet's method: an initial sample per synset with ten votes each (its
  majority taken as truth) gives the synset's table P(right | yes, no); the other items are
  asked until their cell in the table reaches the target or 1 - target;
- classify: the same crowd picking one class out of all the synsets for each image (the right
  one with the volunteer's accuracy, else mostly the true class's look-alike), decided by the
  project's majority rule; an image counts as accepted for the synset if decided as it.

Votes per accepted image count every human answer a scheme needed: gold, initial samples and
votes on items that ended up rejected or disputed.

    python bench/verify_cost.py [--synsets 1000] [--pool 100] [--seed 1] [--near-miss-share 0.25]
"""

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate.services.verification_consensus import (
    DEFAULT_MAX_VOTES,
    DEFAULT_TARGET_CONFIDENCE,
    LABEL_PRIOR_STRENGTH,
    PRIOR_FLOOR,
    RATING_CONFIDENCE,
    RELIABILITY_PRIOR_STRENGTH,
    VoterReliability,
    candidate_posterior,
    confidence_table,
    decide_item,
    label_prior,
    rating_reference,
    vote_log_likelihood_ratio,
    voter_reliability,
)

OPEN, ACCEPTED, REJECTED, DISPUTED = 0, 1, 2, 3
STATE_CODES = {"open": OPEN, "accepted": ACCEPTED, "rejected": REJECTED, "disputed": DISPUTED}
FIXED_VOTES = 10
# Every item's volunteers and answers are drawn this deep (or to --max-votes if deeper), so that
# changing --max-votes changes the schemes, not the world they run in.
WORLD_DEPTH = 30


@dataclass
class World:
    """The synsets' candidates, the crowd, and every answer any scheme may ask for."""

    synset: np.ndarray  # (items,) the synset each candidate was proposed for
    right: np.ndarray  # (items,) bool: the candidate shows its synset
    near_miss: np.ndarray  # (items,) bool: wrong, and of the synset's look-alike class
    true_class: np.ndarray  # (items,) the class the image really shows
    voters: np.ndarray  # (items, depth) distinct volunteers, in the order they come
    says_yes: np.ndarray  # (items, depth) bool: each one's verify answer
    picks: np.ndarray  # (items, depth) each one's class in classify mode
    accuracy: np.ndarray  # (volunteers,) honest accuracy; a spammer's is nan
    spammer: np.ndarray  # (volunteers,) bool
    yes_rate: np.ndarray  # (volunteers,) a spammer's rate of yes (nan for the honest)
    share: np.ndarray  # (synsets,) each synset's share of right candidates


def lookalike(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Classes 2i and 2i+1 look alike (the last one, when odd, pairs with its predecessor)."""
    paired = classes ^ 1
    return np.where(paired >= n_classes, classes - 1, paired)


def build_world(args: argparse.Namespace, rng: np.random.Generator) -> World:
    n_syn, pool, depth = args.synsets, args.pool, max(WORLD_DEPTH, args.max_votes)
    share = rng.uniform(0.10, 0.80, n_syn)
    synset = np.repeat(np.arange(n_syn), pool)
    right = rng.random(synset.size) < share[synset]
    near_miss = ~right & (rng.random(synset.size) < args.near_miss_share)
    n_classes = max(n_syn, 2)  # the classes an image can show: the synsets (and one more)
    other = (synset + rng.integers(1, n_classes, synset.size)) % n_classes
    near = lookalike(synset, n_classes)
    true_class = np.where(right, synset, np.where(near_miss, near, other))

    n_vol = args.volunteers + args.spammers
    spammer = np.arange(n_vol) >= args.volunteers
    accuracy = np.where(spammer, np.nan, rng.uniform(0.55, 0.95, n_vol))
    yes_rate = np.where(spammer, rng.uniform(0.2, 0.8, n_vol), np.nan)

    # Each item's volunteers: a random ordered sample without repeats (nobody sees it twice).
    voters = np.empty((synset.size, depth), dtype=np.int32)
    for start in range(0, synset.size, 20000):
        keys = rng.random((min(20000, synset.size - start), n_vol))
        first = np.argpartition(keys, depth, axis=1)[:, :depth]
        order = np.argsort(np.take_along_axis(keys, first, axis=1), axis=1)
        voters[start : start + len(keys)] = np.take_along_axis(first, order, axis=1)

    acc = accuracy[voters]
    # An honest volunteer's chance of the right answer: their accuracy, except on near misses,
    # where their margin over a coin toss shrinks by the near-miss hardness.
    hard_acc = 0.5 + (acc - 0.5) * (1.0 - args.near_miss_hardness)
    p_correct = np.where(near_miss[:, None], hard_acc, acc)
    p_yes = np.where(right[:, None], p_correct, 1.0 - p_correct)
    p_yes = np.where(spammer[voters], yes_rate[voters], p_yes)
    says_yes = rng.random(voters.shape) < p_yes

    # Classify mode: the true class with the same chance of being right, else the look-alike
    # of the true class (70%) or any class; a spammer picks any class.
    truth = true_class[:, None]
    p_class = np.where(right[:, None] | ~near_miss[:, None], acc, hard_acc)
    draw = rng.random(voters.shape)
    wrong_pick = np.where(
        rng.random(voters.shape) < 0.7,
        lookalike(np.broadcast_to(truth, voters.shape), n_classes),
        rng.integers(0, n_classes, voters.shape),
    )
    picks = np.where(draw < p_class, truth, wrong_pick)
    picks = np.where(spammer[voters], rng.integers(0, n_classes, voters.shape), picks)
    return World(
        synset, right, near_miss, true_class, voters, says_yes, picks,
        accuracy, spammer, yes_rate, share,
    )  # fmt: skip


@dataclass
class Result:
    name: str
    state: np.ndarray  # (items,) OPEN/ACCEPTED/REJECTED/DISPUTED
    votes: int  # every human answer spent, gold and samples included
    posterior: np.ndarray | None = None  # claimed P(right) at the end, where the scheme has one
    decided: int | None = None  # classify: images decided as any class
    decided_right: int | None = None  # classify: of those, decided as their true class


def run_fixed(world: World) -> Result:
    yes = world.says_yes[:, :FIXED_VOTES].sum(axis=1)
    state = np.where(yes * 2 > FIXED_VOTES, ACCEPTED, REJECTED)
    return Result("fixed-10 majority", state, FIXED_VOTES * world.synset.size)


def gold_counts(
    world: World, rng: np.random.Generator, per_volunteer: int, near_miss_share: float, hard: float
) -> np.ndarray:
    """Each volunteer answers `per_volunteer` gold items (half known-yes, half known-no):
    (volunteers, 4) counts of true_yes, false_no, true_no, false_yes."""
    n_vol = world.accuracy.size
    counts = np.zeros((n_vol, 4))
    right = rng.random((n_vol, per_volunteer)) < 0.5
    near = ~right & (rng.random((n_vol, per_volunteer)) < near_miss_share)
    acc = np.nan_to_num(world.accuracy)[:, None]
    p_correct = np.where(near, 0.5 + (acc - 0.5) * (1.0 - hard), acc)
    p_yes = np.where(right, p_correct, 1.0 - p_correct)
    p_yes = np.where(world.spammer[:, None], world.yes_rate[:, None], p_yes)
    yes = rng.random(p_yes.shape) < p_yes
    counts[:, 0] = (right & yes).sum(axis=1)
    counts[:, 1] = (right & ~yes).sum(axis=1)
    counts[:, 2] = (~right & ~yes).sum(axis=1)
    counts[:, 3] = (~right & yes).sum(axis=1)
    return counts


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PRIOR_FLOOR, 1.0 - PRIOR_FLOOR)
    return np.log(p) - np.log1p(-p)


def run_bayes(world: World, args: argparse.Namespace, rng: np.random.Generator) -> Result:
    """Items enter in waves (as grids are served over time); each step, every open item that has
    entered gets one more vote. A new vote first rates its voter (rating_reference() on the
    item's posterior before it), then the item's posterior is recomputed with the voters'
    current reliabilities and its synset's current prior, and decide_item() decides it."""
    n_items, n_vol = world.synset.size, world.accuracy.size
    counts = gold_counts(world, rng, args.gold, args.near_miss_share, args.near_miss_hardness)
    gold_votes = int(counts.sum())
    entry = (np.arange(n_items) % args.pool) * args.waves // args.pool * args.wave_gap
    votes = np.zeros(n_items, dtype=np.int64)
    state = np.full(n_items, OPEN)
    posterior = np.zeros(n_items)
    depth = world.voters.shape[1]
    yes_llr, no_llr = np.zeros(n_vol), np.zeros(n_vol)
    step = 0
    while (state == OPEN).any():
        reliabilities = [reliability_of(counts, voter, args) for voter in range(n_vol)]
        if args.oracle_reliability:  # diagnostic: what knowing each voter exactly would give
            reliabilities = [
                VoterReliability(world.yes_rate[v], 1.0 - world.yes_rate[v])
                if world.spammer[v]
                else VoterReliability(world.accuracy[v], world.accuracy[v])
                for v in range(n_vol)
            ]
        for voter, reliability in enumerate(reliabilities):
            yes_llr[voter] = vote_log_likelihood_ratio(said_yes=True, reliability=reliability)
            no_llr[voter] = vote_log_likelihood_ratio(said_yes=False, reliability=reliability)

        asked = np.flatnonzero((state == OPEN) & (entry <= step))
        prior = priors_for(world, state, votes, posterior, args)
        before = np.where(votes[asked] == 0, prior[world.synset[asked]], posterior[asked])
        rate_new_votes(world, asked, votes[asked], before, counts, args)
        votes[asked] += 1
        llr = vote_llrs(world, asked, votes[asked], yes_llr, no_llr, depth)
        log_odds = logit(prior[world.synset[asked]]) + llr.sum(axis=1)
        posterior[asked] = 1.0 / (1.0 + np.exp(-log_odds))
        for item in asked:
            decision = decide_item(
                posterior=float(posterior[item]),
                votes=int(votes[item]),
                min_votes=args.min_votes,
                max_votes=args.max_votes,
                target_confidence=args.target,
            )
            state[item] = STATE_CODES[decision.state]
        if asked.size:  # the vectorised sum is the service's candidate_posterior()
            sampled = int(rng.choice(asked))
            answers = [
                (bool(world.says_yes[sampled, j]), reliabilities[world.voters[sampled, j]])
                for j in range(votes[sampled])
            ]
            prior_of_sampled = float(prior[world.synset[sampled]])
            expected = candidate_posterior(prior=prior_of_sampled, answers=answers)
            assert abs(expected - posterior[sampled]) < 1e-9, (expected, posterior[sampled])
        step += 1
    return Result("bayes (ours)", state, int(votes.sum()) + gold_votes, posterior)


def rate_new_votes(
    world: World,
    asked: np.ndarray,
    earlier: np.ndarray,
    before: np.ndarray,
    counts: np.ndarray,
    args: argparse.Namespace,
) -> None:
    """Add each new vote to its voter's counts (true_yes, false_no, true_no, false_yes) as
    rating_reference() says: against the item's posterior from the votes before it."""
    references = [
        rating_reference(posterior_before=float(p), confidence=args.rating_confidence)
        for p in before
    ]
    right = np.array([reference is True for reference in references], dtype=bool)
    wrong = np.array([reference is False for reference in references], dtype=bool)
    said = world.says_yes[asked, earlier]
    who = world.voters[asked, earlier]
    for column, mask in enumerate((right & said, right & ~said, wrong & ~said, wrong & said)):
        counts[:, column] += np.bincount(who[mask], minlength=counts.shape[0])


def reliability_of(counts: np.ndarray, voter: int, args: argparse.Namespace) -> VoterReliability:
    return voter_reliability(
        true_yes=int(counts[voter, 0]),
        false_no=int(counts[voter, 1]),
        true_no=int(counts[voter, 2]),
        false_yes=int(counts[voter, 3]),
        prior_strength=args.reliability_strength,
    )


def vote_llrs(
    world: World,
    items: np.ndarray,
    n_votes: np.ndarray,
    yes_llr: np.ndarray,
    no_llr: np.ndarray,
    depth: int,
) -> np.ndarray:
    """(items, depth) each vote's log-likelihood ratio, 0 past each item's votes so far."""
    who = world.voters[items]
    llr = np.where(world.says_yes[items], yes_llr[who], no_llr[who])
    return np.where(np.arange(depth)[None, :] < n_votes[:, None], llr, 0.0)


def priors_for(
    world: World,
    state: np.ndarray,
    votes: np.ndarray,
    posterior: np.ndarray,
    args: argparse.Namespace,
) -> np.ndarray:
    """label_prior() per synset, shrunk toward the project's share (label_prior() over all
    synsets). With `--prior-from expected` (the default) its counts are expected ones: the sum
    of the posteriors of every candidate with a vote, open or settled (a reviewed one as the
    reviewer settled it); with `decided`, the accepted and rejected candidates so far."""
    reviewed = (state == DISPUTED) & args.review
    if args.prior_from == "expected":
        seen = votes > 0
        right = np.where(reviewed, world.right, posterior) * seen
        accepted = np.bincount(world.synset, weights=right, minlength=args.synsets)
        rejected = np.bincount(world.synset, weights=seen - right, minlength=args.synsets)
    else:
        accepted = np.bincount(
            world.synset[(state == ACCEPTED) | (reviewed & world.right)], minlength=args.synsets
        ).astype(float)
        rejected = np.bincount(
            world.synset[(state == REJECTED) | (reviewed & ~world.right)], minlength=args.synsets
        ).astype(float)
    pool = label_prior(accepted=float(accepted.sum()), rejected=float(rejected.sum()))
    return np.array(
        [
            label_prior(
                accepted=float(a), rejected=float(r), pool_prior=pool, strength=LABEL_PRIOR_STRENGTH
            )
            for a, r in zip(accepted, rejected, strict=True)
        ]
    )


def run_imagenet_table(world: World, args: argparse.Namespace) -> Result:
    """ImageNet's dynamic consensus: the first `initial_sample` candidates of each synset get
    ten votes; their majority is the truth that builds the synset's confidence_table(); the
    other candidates get votes until their (yes, no) cell reaches the target or 1 - target."""
    n_items, depth = world.synset.size, world.voters.shape[1]
    position = np.arange(n_items) % args.pool
    sample = position < args.initial_sample
    sample_yes = world.says_yes[:, :FIXED_VOTES].sum(axis=1)
    sample_right = sample_yes * 2 > FIXED_VOTES
    state = np.full(n_items, OPEN)
    state[sample] = np.where(sample_right[sample], ACCEPTED, REJECTED)
    votes = np.where(sample, FIXED_VOTES, 0)

    cells = np.full((args.synsets, depth + 1, depth + 1), np.nan)
    for synset_id in range(args.synsets):
        items = np.flatnonzero(sample & (world.synset == synset_id))
        table = confidence_table(
            [
                (int(sample_yes[i]), FIXED_VOTES - int(sample_yes[i]), bool(sample_right[i]))
                for i in items
            ],
            smoothing=args.table_smoothing,
        )
        for (yes, no), probability in table.items():
            cells[synset_id, yes, no] = probability

    rest = np.flatnonzero(~sample)
    yes_so_far = np.cumsum(world.says_yes[rest], axis=1)
    for k in range(1, args.max_votes + 1):
        open_rest = state[rest] == OPEN
        items = rest[open_rest]
        votes[items] = k
        yes = yes_so_far[open_rest, k - 1]
        probability = cells[world.synset[items], yes, k - yes]
        decided = k >= args.min_votes
        accept = decided & (probability >= args.target)
        reject = decided & (probability <= 1.0 - args.target)
        state[items[accept]] = ACCEPTED
        state[items[reject]] = REJECTED
        if k == args.max_votes:
            state[items[~accept & ~reject]] = DISPUTED
    return Result("imagenet-table", state, int(votes.sum()))


def run_classify(world: World, args: argparse.Namespace) -> Result:
    """Classify mode: each volunteer picks a class; the project's majority rule (decided once
    `classify_min_votes` are in and one class holds `classify_agreement` of them, disputed at
    max_votes). Accepted for the synset when decided as that synset."""
    n_items = world.synset.size
    state = np.full(n_items, OPEN)
    label = np.full(n_items, -1)
    votes = np.zeros(n_items, dtype=np.int64)
    for k in range(1, args.max_votes + 1):
        items = np.flatnonzero(state == OPEN)
        votes[items] = k
        picks = world.picks[items, :k]
        agree = (picks[:, :, None] == picks[:, None, :]).sum(axis=2)
        top = agree.argmax(axis=1)
        top_count = agree[np.arange(items.size), top]
        decided = (k >= args.classify_min_votes) & (top_count >= args.classify_agreement * k)
        label[items[decided]] = picks[np.arange(items.size), top][decided]
        state[items[decided]] = np.where(
            label[items[decided]] == world.synset[items[decided]], ACCEPTED, REJECTED
        )
        if k == args.max_votes:
            state[items[~decided]] = DISPUTED
    return Result(
        "classify (1 of all)",
        state,
        int(votes.sum()),
        decided=int((label >= 0).sum()),
        decided_right=int((label == world.true_class).sum()),
    )


def wilson_low(hits: int, total: int, z: float = 1.96) -> float:
    if total == 0:
        return float("nan")
    p = hits / total
    centre = p + z * z / (2 * total)
    margin = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return float((centre - margin) / (1 + z * z / total))


def report(world: World, results: list[Result]) -> None:
    n_right = int(world.right.sum())
    print(
        f"{'scheme':22} {'accepted':>9} {'precision':>9} {'(95% low)':>9} {'recall':>7}"
        f" {'disputed':>8} {'votes':>9} {'votes/accepted':>14} {'votes/item':>10}"
    )
    for result in results:
        accepted = result.state == ACCEPTED
        hits = int((accepted & world.right).sum())
        n_acc = int(accepted.sum())
        print(
            f"{result.name:22} {n_acc:9d} {hits / max(n_acc, 1):9.4%} "
            f"{wilson_low(hits, n_acc):9.4%} {hits / n_right:7.2%} "
            f"{(result.state == DISPUTED).mean():8.2%} {result.votes:9d} "
            f"{result.votes / max(n_acc, 1):14.2f} {result.votes / world.synset.size:10.2f}"
        )
        if result.decided is not None and result.decided_right is not None:
            print(
                f"{'':22} (classify also labels the other images: {result.decided} decided, "
                f"{result.decided_right / max(result.decided, 1):.2%} right, "
                f"{result.votes / max(result.decided, 1):.2f} votes per decided image)"
            )


def report_by_share(world: World, result: Result) -> None:
    print(f"\n{result.name} by the synset's share of right candidates:")
    print(f"{'share':>11} {'items':>7} {'accepted':>8} {'precision':>9} {'recall':>7}")
    share = world.share[world.synset]
    for low, high in ((0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.8)):
        band = (share >= low) & ((share < high) if high < 0.8 else (share <= high))
        accepted = band & (result.state == ACCEPTED)
        hits = int((accepted & world.right).sum())
        print(
            f"{low:4.0%}-{high:<4.0%}  {int(band.sum()):7d} {int(accepted.sum()):8d} "
            f"{hits / max(int(accepted.sum()), 1):9.4%} "
            f"{hits / max(int((band & world.right).sum()), 1):7.2%}"
        )


def report_calibration(world: World, result: Result) -> None:
    assert result.posterior is not None
    print(f"\n{result.name} calibration (final posterior of every item vs the truth):")
    print(f"{'claimed P(right)':>18} {'items':>7} {'mean claimed':>12} {'measured':>9}")
    bands = [0.0, 0.003, 0.05, 0.5, 0.95, 0.997, 0.999, 0.9999, 1.0 + 1e-12]
    for low, high in zip(bands[:-1], bands[1:], strict=True):
        band = (result.posterior >= low) & (result.posterior < high)
        if not band.any():
            continue
        print(
            f"  [{low:.4f}, {min(high, 1.0):.4f}) {int(band.sum()):7d} "
            f"{result.posterior[band].mean():12.4%} {world.right[band].mean():9.4%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synsets", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=100, help="candidates per synset")
    parser.add_argument("--volunteers", type=int, default=300)
    parser.add_argument("--spammers", type=int, default=15)
    parser.add_argument(
        "--near-miss-share",
        type=float,
        default=0.0,
        help="share of wrong candidates that are near misses (a stress test: 0.25)",
    )
    parser.add_argument("--near-miss-hardness", type=float, default=0.5)
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET_CONFIDENCE)
    parser.add_argument("--min-votes", type=int, default=2)
    parser.add_argument("--max-votes", type=int, default=DEFAULT_MAX_VOTES)
    parser.add_argument("--gold", type=int, default=10, help="gold answers per volunteer")
    parser.add_argument("--reliability-strength", type=float, default=RELIABILITY_PRIOR_STRENGTH)
    parser.add_argument(
        "--prior-from",
        choices=("expected", "decided"),
        default="expected",
        help="a synset's prior from the sum of its candidates' posteriors (the service's way) "
        "or from its decided candidates (to see why not)",
    )
    parser.add_argument("--rating-confidence", type=float, default=RATING_CONFIDENCE)
    parser.add_argument(
        "--oracle-reliability",
        action="store_true",
        help="diagnostic: bayes told each voter's true reliability instead of estimating it",
    )
    parser.add_argument(
        "--review",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="disputed items are settled by a reviewer, whose answer feeds the synset's prior",
    )
    parser.add_argument(
        "--waves", type=int, default=5, help="bayes: a synset's candidates enter in this many waves"
    )
    parser.add_argument("--wave-gap", type=int, default=2, help="votes between two waves")
    parser.add_argument(
        "--initial-sample", type=int, default=20, help="imagenet-table: sampled items per synset"
    )
    parser.add_argument("--table-smoothing", type=float, default=0.0)
    parser.add_argument("--classify-min-votes", type=int, default=2)
    parser.add_argument("--classify-agreement", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.synsets < 1 or args.volunteers < 1 or args.spammers < 0 or args.waves < 1:
        parser.error("need synsets >= 1, volunteers >= 1, spammers >= 0 and waves >= 1")
    if not 1 <= args.initial_sample <= args.pool:
        parser.error("need 1 <= initial-sample <= pool")
    if not 1 <= args.min_votes <= args.max_votes or args.max_votes > 100:
        parser.error("need 1 <= min-votes <= max-votes <= 100")
    if args.volunteers + args.spammers < max(WORLD_DEPTH, args.max_votes):
        parser.error("need at least as many volunteers as an item's deepest vote")
    if not 0.5 < args.target < 1.0 or not 0.5 < args.rating_confidence < 1.0:
        parser.error("target and rating-confidence must lie strictly between 0.5 and 1")
    if not (0.0 <= args.near_miss_share <= 1.0 and 0.0 <= args.near_miss_hardness <= 1.0):
        parser.error("near-miss-share and near-miss-hardness must lie between 0 and 1")
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    world = build_world(args, rng)
    results = [
        run_bayes(world, args, rng),
        run_fixed(world),
        run_imagenet_table(world, args),
        run_classify(world, args),
    ]
    print(
        f"{args.synsets} synsets x {args.pool} candidates ({int(world.right.sum())} right), "
        f"{args.volunteers} volunteers + {args.spammers} spammers, near misses "
        f"{args.near_miss_share:.0%} of wrong candidates (hardness {args.near_miss_hardness}), "
        f"target {args.target}, votes {args.min_votes}..{args.max_votes}, seed {args.seed}\n"
    )
    report(world, results)
    report_by_share(world, results[0])
    report_calibration(world, results[0])
    bayes, fixed = results[0], results[1]
    n_bayes = max(int((bayes.state == ACCEPTED).sum()), 1)
    n_fixed = max(int((fixed.state == ACCEPTED).sum()), 1)
    precision = float((world.right[bayes.state == ACCEPTED]).mean())
    print(
        f"\ntarget precision >= 99.7%: {'met' if precision >= 0.997 else 'NOT met'} "
        f"({precision:.4%}); votes per accepted image {bayes.votes / n_bayes:.2f} vs fixed-10 "
        f"{fixed.votes / n_fixed:.2f}: "
        f"{'fewer' if bayes.votes / n_bayes < fixed.votes / n_fixed else 'NOT fewer'}"
        f"  ({time.perf_counter() - started:.1f} s)"
    )
    classify = results[3]
    classify_accepted = classify.state == ACCEPTED
    n_classify = max(int(classify_accepted.sum()), 1)
    print(
        f"classify mode on the same images: precision "
        f"{float(world.right[classify_accepted].mean()):.4%}, recall "
        f"{float((world.right & classify_accepted).sum() / world.right.sum()):.2%}, "
        f"{classify.votes / n_classify:.2f} votes per accepted image"
    )


if __name__ == "__main__":
    main()
