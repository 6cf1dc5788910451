"""A demo project with generated images of a few shape classes, and one user per role."""

import io
import math
import random

from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from annotate.demo_verify import verify_demo_create
from annotate.models import Project, TrainingRun, User
from annotate.services import accounts, ingest, ml_runs, projects
from annotate.services.errors import Conflict, InvalidInput

DEMO_PROJECT = "Demo: shapes"
# With each label's Chinese name (the mapping file's name column), shown to volunteers whose
# browser asks for Chinese.
SYNSETS = """\
circle circle, round shape\tzh-hans=圆形
square square, quadrilateral\tzh-hans=正方形
triangle triangle, trigon\tzh-hans=三角形
star star, five-pointed star\tzh-hans=五角星
"""


def draw_shape(kind: str, rng: random.Random, size: int = 256) -> bytes:
    """A shape of `kind` in a random colour, place and size, on a noisy background."""
    background = tuple(rng.randint(150, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    for _ in range(20):  # clutter, so that no two images are alike
        x, y = rng.randrange(size), rng.randrange(size)
        draw.point((x, y), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    colour = tuple(rng.randint(0, 140) for _ in range(3))
    cx, cy = rng.randint(80, size - 80), rng.randint(80, size - 80)
    r = rng.randint(35, 70)
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == "square":
        points = [
            (cx + r * math.cos(angle + k * math.pi / 2), cy + r * math.sin(angle + k * math.pi / 2))
            for k in range(4)
        ]
        draw.polygon(points, fill=colour)
    elif kind == "triangle":
        points = [
            (
                cx + r * math.cos(angle + k * 2 * math.pi / 3),
                cy + r * math.sin(angle + k * 2 * math.pi / 3),
            )
            for k in range(3)
        ]
        draw.polygon(points, fill=colour)
    else:
        points = [
            (
                cx + (r if k % 2 == 0 else r * 0.45) * math.cos(angle + k * math.pi / 5),
                cy + (r if k % 2 == 0 else r * 0.45) * math.sin(angle + k * math.pi / 5),
            )
            for k in range(10)
        ]
        draw.polygon(points, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo projects (classify and verify), their images, and the "
        "users admin, reviewer, volunteer."
    )

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=60, help="how many images to label")
        parser.add_argument(
            "--gold",
            type=int,
            default=160,
            help="how many gold images (known labels): enough for the CNN to learn the shapes",
        )
        parser.add_argument(
            "--password", default="demo-labeling", help="password for the demo users"
        )
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--verify-per-label",
            type=int,
            default=12,
            help="candidate images per shape in the verify project (a share of them wrong)",
        )

    def handle(
        self,
        *args,
        images: int,
        gold: int,
        password: str,
        seed: int,
        verify_per_label: int = 12,
        **options,
    ):
        with transaction.atomic():
            for username, role in (
                ("admin", User.Role.ADMIN),
                ("reviewer", User.Role.REVIEWER),
                ("volunteer", User.Role.VOLUNTEER),
            ):
                user, _ = User.objects.get_or_create(username=username)
                user.set_password(password)
                user.is_superuser = role == User.Role.ADMIN
                user.save()
                accounts.user_set_role(user=user, role=role)
                accounts.user_token(user=user)
            project = Project.objects.filter(name=DEMO_PROJECT).first() or projects.project_create(
                name=DEMO_PROJECT,
                description="Generated shapes. Pick the shape you see; 0 if none fits.",
                min_votes=2,
                max_votes=4,
                agreement=0.75,
            )
            ingest.labels_import(project=project, text=SYNSETS)
        rng = random.Random(seed)
        kinds = [line.split()[0] for line in SYNSETS.splitlines()]
        created = duplicates = 0
        for index in tqdm(range(images), desc="demo images", unit="img", disable=None):
            kind = kinds[index % len(kinds)]
            data = draw_shape(kind, rng)
            result = ingest.images_upload(
                project=project, files=[(f"{kind}_{index:04d}.jpg", io.BytesIO(data))]
            )
            created += len(result.created)
            duplicates += result.duplicates
        # Gold images: verified labels from the start, so the worker trains a first model by
        # itself (beat) and suggestions appear; the model improves as volunteers decide more.
        labels = {label.wnid: label for label in project.labels.all()}
        gold_rng = random.Random(seed + 1)
        for index in tqdm(range(gold), desc="demo gold images", unit="img", disable=None):
            kind = kinds[index % len(kinds)]
            result = ingest.images_upload(
                project=project,
                files=[(f"gold_{kind}_{index:04d}.jpg", io.BytesIO(draw_shape(kind, gold_rng)))],
                gold_label=labels[kind],
            )
            created += len(result.created)
            duplicates += result.duplicates
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo project {project.name!r} (id {project.pk}): {created} images added "
                f"({gold} of them gold), {duplicates} already there. "
                f"Users admin, reviewer, volunteer; password: {password}"
            )
        )
        # The first model now: the worker takes it as soon as it starts, instead of at beat's
        # first check a minute later (issue 22: a first model within two minutes).
        if not TrainingRun.objects.filter(project=project).exists():
            try:
                run = ml_runs.training_request(project=project, reason=TrainingRun.Reason.GROWTH)
                self.stdout.write(f"First training of the demo project queued (run {run.pk}).")
            except (Conflict, InvalidInput) as error:
                self.stdout.write(f"No first training queued: {error}")
        verify = verify_demo_create(
            synsets=SYNSETS,
            draw=draw_shape,
            per_label=verify_per_label,
            wrong_share=0.25,
            seed=seed + 2,
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Verify project {verify.project.name!r} (id {verify.project.pk}): "
                f"{verify.created} candidate images added ({verify.wrong} of them wrong on "
                f"purpose), {verify.candidates} candidates to verify."
            )
        )
