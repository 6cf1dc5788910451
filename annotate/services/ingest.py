"""Bringing images and label sets into a project: validate, dedupe, store, preprocess."""

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

import PIL.Image
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import ImageOps, UnidentifiedImageError

from annotate.models import Decision, Image, Label, Project, label_key_validator
from annotate.services import jobs
from annotate.services.consensus import decision_record
from annotate.services.errors import InvalidInput
from annotate.services.serving import image_free_slots

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}


# --- label sets -------------------------------------------------------------------------------


@dataclass
class LabelImportResult:
    created: int = 0
    existing: int = 0
    errors: list[dict] = field(default_factory=list)


def _parse_synset_line(line: str) -> tuple[str, str]:
    wnid, _, names = line.strip().partition(" ")
    names = names.strip()
    if not names:
        raise ValueError("expected '<wnid> <name>[, <other names>]'")
    try:
        label_key_validator(wnid)
    except Exception:
        raise ValueError(f"{wnid[:70]!r} is not a valid label id (WordNet id or slug)") from None
    if len(names) > 200:
        raise ValueError("names longer than 200 characters")
    return wnid, names


def labels_import(*, project: Project, text: str) -> LabelImportResult:
    """Import a synset mapping (`n02123045 tabby, tabby cat`, one per line).

    Labels already in the project are counted as `existing`, so re-importing adds nothing.
    Bad lines are reported with their line numbers; the good ones are imported.
    """
    result = LabelImportResult()
    parsed: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            result.errors.append({"line": number, "reason": "blank line"})
            continue
        try:
            wnid, names = _parse_synset_line(line)
        except ValueError as error:
            result.errors.append({"line": number, "reason": str(error)})
            continue
        if wnid in seen:
            result.errors.append(
                {"line": number, "reason": f"duplicate id {wnid} (first on line {seen[wnid]})"}
            )
            continue
        seen[wnid] = number
        parsed.append((number, wnid, names))
    if not parsed:
        raise InvalidInput("No valid synset lines found: expected '<wnid> <name>' per line.")
    with transaction.atomic():
        existing = set(
            Label.objects.filter(project=project, wnid__in=seen).values_list("wnid", flat=True)
        )
        start = Label.objects.filter(project=project).count()
        new_labels = [
            Label(project=project, wnid=wnid, name=names, position=start + index)
            for index, (_, wnid, names) in enumerate(
                item for item in parsed if item[1] not in existing
            )
        ]
        Label.objects.bulk_create(new_labels)
    result.created = len(new_labels)
    result.existing = len(existing)
    return result


# --- images -----------------------------------------------------------------------------------


@dataclass
class UploadResult:
    created: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)


class ImageRejected(Exception):
    """The file is not an image we accept; the message says why."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    format: str
    width: int
    height: int


def image_check(data: bytes) -> CheckedImage:
    """Identify and fully decode `data`, refusing what we can't or won't store."""
    if len(data) > settings.IMAGE_MAX_BYTES:
        raise ImageRejected(f"file is larger than {settings.IMAGE_MAX_BYTES} bytes")
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; we refuse instead.
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as img:
                if img.format not in ALLOWED_FORMATS:
                    raise ImageRejected(f"format {img.format} is not accepted")
                if img.width * img.height > settings.IMAGE_MAX_PIXELS:
                    raise ImageRejected(
                        f"image has {img.width * img.height} pixels, more than the limit "
                        f"of {settings.IMAGE_MAX_PIXELS}"
                    )
                img.load()
                oriented = ImageOps.exif_transpose(img)
                return CheckedImage(
                    data=data,
                    sha256=hashlib.sha256(data).hexdigest(),
                    format=img.format,
                    width=oriented.width,
                    height=oriented.height,
                )
    except ImageRejected:
        raise
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"decompression bomb refused: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"damaged or truncated image: {error}") from None


def image_store(
    *, project: Project, name: str, checked: CheckedImage, gold_label: Label | None = None
) -> Image | None:
    """Store one checked image: file, row and (for gold) its decision, all or nothing.

    Returns None when the project already holds the same bytes.
    """
    if Image.objects.filter(project=project, sha256=checked.sha256).exists():
        return None
    image = Image(
        project=project,
        original_name=name[:255],
        sha256=checked.sha256,
        size_bytes=len(checked.data),
        format=checked.format,
        width=checked.width,
        height=checked.height,
        is_gold=gold_label is not None,
        gold_label=gold_label,
    )
    safe_name = default_storage.get_valid_name(name.rsplit("/", 1)[-1]) or "image"
    image.file.save(safe_name, ContentFile(checked.data), save=False)
    try:
        with transaction.atomic():
            if gold_label is not None:
                image.state = Image.State.CONSENSUS
            image.free_slots = image_free_slots(image=image, project=project)
            image.save()
            if gold_label is not None:
                decision_record(
                    image=image, label_id=gold_label.pk, rule=Decision.Rule.GOLD, confidence=1.0
                )
            jobs.enqueue_on_commit("annotate.image_preprocess", image.pk)
    except IntegrityError:
        # Another upload stored the same bytes in the meantime.
        default_storage.delete(image.file.name)
        return None
    except BaseException:
        default_storage.delete(image.file.name)
        raise
    return image


def images_upload(
    *, project: Project, files: Iterable[tuple[str, BinaryIO]], gold_label: Label | None = None
) -> UploadResult:
    """Check and store each file on its own: one bad file rejects that file only."""
    if gold_label is not None and gold_label.project_id != project.pk:
        raise InvalidInput("The gold label belongs to another project.", field="gold_label")
    result = UploadResult()
    for name, stream in files:
        try:
            checked = image_check(stream.read(settings.IMAGE_MAX_BYTES + 1))
        except ImageRejected as error:
            result.rejected.append({"name": name, "reason": str(error)})
            continue
        image = image_store(project=project, name=name, checked=checked, gold_label=gold_label)
        if image is None:
            result.duplicates += 1
        else:
            result.created.append(image.pk)
    return result


def image_preprocess(*, image_id: int) -> bool:
    """Write the CNN's copy of an image (RGB JPEG, shorter side PREPROCESSED_SHORT_SIDE).

    Idempotent: returns False when the copy exists already or the image is gone.
    """
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        return False
    if image.preprocessed and default_storage.exists(image.preprocessed.name):
        return False
    with image.file.open("rb") as source, PIL.Image.open(source) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "P", "PA"):
            img = img.convert("RGBA")
            background = PIL.Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img, mask=img.getchannel("A"))
            img = background
        img = img.convert("RGB")
        short = settings.PREPROCESSED_SHORT_SIDE
        scale = short / min(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, PIL.Image.Resampling.BICUBIC, reducing_gap=3.0)
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
    name = f"preprocessed/{image.project_id}/{image.pk}.jpg"
    if default_storage.exists(name):
        default_storage.delete(name)
    stored_name = default_storage.save(name, ContentFile(buffer.getvalue()))
    # The row points at the copy only once the file is complete.
    updated = Image.objects.filter(pk=image_id).update(preprocessed=stored_name)
    if not updated:
        default_storage.delete(stored_name)
        return False
    return True
