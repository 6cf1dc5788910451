"""Images API: list and upload a project's images, serve an image's display copy (and its
original, to admins)."""

from typing import Any, cast

from django.core.exceptions import SuspiciousOperation
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import Image, Label, Project, ProjectMember
from annotate.services import ingest, verification_candidates
from annotate.services.errors import InvalidInput
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamAdmin, IsTeamReviewer
from labeling_api.serializers import ImageOutputSerializer


class ImageListUploadApi(GenericAPIView[Image]):
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImageOutputSerializer

    class ImageUploadInputSerializer(serializers.Serializer[Any]):
        files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
        gold_label = serializers.CharField(
            required=False, help_text="Label id or wnid: the uploaded images are gold."
        )
        gold_from_folders = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Gold labels from the folders of zip members: <wnid>/... or train/<wnid>/...",
        )
        candidate_label = serializers.CharField(
            required=False,
            help_text="Label id or wnid: a candidate label of every uploaded image, to verify.",
        )

    def get_permissions(self) -> list[BasePermission]:
        return [IsTeamAdmin()] if self.request.method == "POST" else [IsTeamReviewer()]

    @extend_schema(
        parameters=[OpenApiParameter("state", str, enum=Image.State.values)],
        responses=ImageOutputSerializer(many=True),
    )
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        state = request.query_params.get("state")
        if state and state not in Image.State.values:
            raise InvalidInput(
                f"Unknown state {state!r}; use one of {', '.join(Image.State.values)}.",
                field="state",
            )
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.REVIEWER
        )
        page = self.paginate_queryset(selectors.images_for_review(project=project, state=state))
        return self.get_paginated_response(ImageOutputSerializer(page, many=True).data)

    @extend_schema(
        request=ImageUploadInputSerializer,
        responses={
            201: inline_serializer(
                "ImageUploadOutput",
                {
                    "created": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "rejected": serializers.ListField(child=serializers.DictField()),
                    "near_duplicates": serializers.ListField(child=serializers.DictField()),
                    "ids": serializers.ListField(child=serializers.IntegerField()),
                    "candidates": serializers.IntegerField(),
                },
            )
        },
        description="Images and zip archives. Each file is stored whole or not at all; refused "
        "files are listed in `rejected` with the reason. 413 when the request is over "
        "UPLOAD_MAX_REQUEST_BYTES.",
    )
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        try:
            content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            content_length = None
        # Before the body is parsed: big files would otherwise be spooled to disk first.
        ingest.upload_size_check(content_length=content_length)
        try:
            fields: dict[str, Any] = {"files": request.FILES.getlist("files")}
            form = cast(QueryDict, request.data)  # what the multipart and form parsers give
        except SuspiciousOperation as error:  # too many files or form fields, too big a form
            raise InvalidInput(f"The upload was refused: {error}", field="files") from None
        for key in ("gold_label", "gold_from_folders", "candidate_label"):
            if key in form:
                fields[key] = form[key]
        data = self.ImageUploadInputSerializer(data=fields)
        data.is_valid(raise_exception=True)
        gold_label = _label_by_key(project, data.validated_data.get("gold_label"), "gold_label")
        candidate_label = _label_by_key(
            project, data.validated_data.get("candidate_label"), "candidate_label"
        )
        result = ingest.images_upload(
            project=project,
            files=[(f.name, f) for f in data.validated_data["files"]],
            gold_label=gold_label,
            gold_from_folders=data.validated_data["gold_from_folders"],
        )
        candidates = 0
        if candidate_label is not None:
            candidates = verification_candidates.candidates_from_upload(
                project=project, image_ids=result.created, label=candidate_label
            )
        return Response(
            {
                "created": len(result.created),
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "near_duplicates": result.near_duplicates,
                "ids": result.created,
                "candidates": candidates,
            },
            status=status.HTTP_201_CREATED,
        )


def _label_by_key(project: Project, key: str | None, field: str) -> Label | None:
    """The project's label with this id or wnid (None for no key); 400 when there is none."""
    if not key:
        return None
    label = selectors.label_by_key(project=project, key=key)
    if label is None:
        raise InvalidInput(f"No label {key!r} in this project.", field=field)
    return label


def _image_response(file: FieldFile, content_type: str) -> FileResponse:
    response = FileResponse(file.open("rb"), as_attachment=False)
    response["Content-Type"] = content_type
    # Served inline as an image only; never sniffed or run as a page.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


class ImageFileApi(APIView):
    """The image as people are shown it, for those allowed to see it (its assignee, reviewers
    and admins): the display copy (upright, RGB JPEG, no metadata, longer side at most
    DISPLAY_MAX_SIDE), never the original."""

    @extend_schema(responses={(200, "image/jpeg"): bytes})
    def get(self, request: AuthenticatedRequest, image_id: int) -> FileResponse:
        image = selectors.access_image_file(user=request.user, image_id=image_id)
        image = ingest.image_display_ensure(image=image)
        return _image_response(image.display, "image/jpeg")


class ImageOriginalApi(APIView):
    """The original file as it was uploaded, metadata and all: admins of its project only."""

    permission_classes = [IsTeamAdmin]

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: AuthenticatedRequest, image_id: int) -> FileResponse:
        image = selectors.access_image_original(user=request.user, image_id=image_id)
        return _image_response(image.file, f"image/{image.format.lower()}")
