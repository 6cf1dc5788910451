"""Confusion counts: what each volunteer answers for each true answer, and the crowd's mistakes
pooled (issue 16). The calibrated posterior (annotate.services.posterior) reads them.

How often a volunteer is right (annotate.services.reliability) is learned from gold and from
decisions that stand without the volunteer's own vote (leave-one-out, standing_voters() here: the
other voters' plurality is the decided answer; a volunteer who decided an image alone learns
nothing from it). *Which* wrong answer they give is learned from gold answers only (weight
GOLD_WEIGHT), where the truth is known: counted from decisions, the images the crowd got wrong
taught the crowd's own look-alike mistake as the truth, and the bench's calibration showed it
(the pooled confusions grew one-sided, 3 read as 8 but never 8 as 3, and confidence overclaimed
by 0.04-0.06). Counts change in the vote's own statement, as sparse rows (only the pairs seen).
"""

from collections import Counter
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Sum

from annotate.models import NONE_KEY, CrowdConfusion
from annotate.rows import confusion as confusion_sql
from annotate.rows.confusion import ROW_TOTAL

GOLD_WEIGHT = 2.0

# (user id, true key, given key) -> weight; user 0 is the crowd (mistakes only).
ConfusionDeltas = dict[tuple[int, int, int], float]
CROWD = 0


def answer_key(label_id: int | None) -> int:
    """The key of an answer in the confusion counts: the label id, or NONE_KEY."""
    return NONE_KEY if label_id is None else label_id


def standing_voters(votes: list[tuple[int, int | None]], decided: int | None) -> list[int]:
    """The voters (by user id) for whom the decision stands without their own vote: the
    answer decided is the unique plurality of the others' votes."""
    counts = Counter(label for _, label in votes)
    standing = []
    for user_id, label in votes:
        counts[label] -= 1
        ranked = [n for answer, n in counts.items() if answer != decided]
        if counts[decided] > 0 and counts[decided] > max(ranked, default=0):
            standing.append(user_id)
        counts[label] += 1
    return standing


def add_answer(
    deltas: ConfusionDeltas, *, user_id: int, true: int | None, given: int | None, weight: float
) -> None:
    """Count `user_id` answering `given` where the answer was `true` (weight may be negative:
    taking back what an earlier decision counted)."""
    true_key, given_key = answer_key(true), answer_key(given)
    key = (user_id, true_key, given_key)
    deltas[key] = deltas.get(key, 0.0) + weight
    if true_key != given_key:
        for crowd_key in ((CROWD, true_key, given_key), (CROWD, true_key, ROW_TOTAL)):
            deltas[crowd_key] = deltas.get(crowd_key, 0.0) + weight


def statements(*, project_id: int, deltas: ConfusionDeltas) -> list[tuple[str, list[Any]]]:
    """The upserts that add `deltas`: one for the volunteers' rows, one for the crowd's, each
    in key order. For rows.write_together() or to run one after another."""
    volunteer = sorted((key, w) for key, w in deltas.items() if key[0] != CROWD)
    crowd = sorted((key[1:], w) for key, w in deltas.items() if key[0] == CROWD)
    found: list[tuple[str, list[Any]]] = []
    postgresql = connection.vendor == "postgresql"
    if volunteer:
        if postgresql:
            columns = [list(column) for column in zip(*(key for key, _ in volunteer), strict=True)]
            found.append(
                (
                    confusion_sql.add_volunteer_arrays(),
                    [project_id, *columns, [w for _, w in volunteer]],
                )
            )
        else:
            params = [v for key, w in volunteer for v in (project_id, *key, w)]
            found.append((confusion_sql.add_volunteer_values(len(volunteer)), params))
    if crowd:
        if postgresql:
            columns = [list(column) for column in zip(*(key for key, _ in crowd), strict=True)]
            found.append(
                (confusion_sql.add_crowd_arrays(), [project_id, *columns, [w for _, w in crowd]])
            )
        else:
            params = [v for key, w in crowd for v in (project_id, *key, w)]
            found.append((confusion_sql.add_crowd_values(len(crowd)), params))
    return found


def crowd_compact(*, project_id: int) -> int:
    """Sum the crowd's appended rows into one per (true, given) pair; returns the rows left.
    Rows appended meanwhile (above the last id read) stay as they are."""
    with transaction.atomic():
        rows = CrowdConfusion.objects.filter(project_id=project_id)
        last = rows.aggregate(last=Max("id"))["last"]
        if last is None:
            return 0
        upto = rows.filter(id__lte=last)
        sums = list(
            upto.values_list("true_key", "given_key").annotate(total=Sum("weight")).order_by()
        )
        upto.delete()
        CrowdConfusion.objects.bulk_create(
            CrowdConfusion(project_id=project_id, true_key=t, given_key=g, weight=w)
            for t, g, w in sums
            if abs(w) > 1e-9
        )
    return CrowdConfusion.objects.filter(project_id=project_id).count()
