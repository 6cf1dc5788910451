"""REST API: parse input, check permissions, call one service, shape the answer."""

from typing import Any, cast

from django.contrib.auth import authenticate
from django.core.exceptions import SuspiciousOperation
from django.http import FileResponse, QueryDict
from django.utils.decorators import method_decorator
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import Image, Label, Project, User
from annotate.services import accounts, ingest, projects, serving, verification_candidates, voting
from annotate.services.errors import InvalidInput
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.conditional import conditional_response
from labeling_api.permissions import IsProjectAdmin, IsReviewer, ReadOrAdmin
from labeling_api.serializers import (
    AssignmentOutputSerializer,
    ImageOutputSerializer,
    LabelOutputSerializer,
    ProjectOutputSerializer,
    assignment_answer,
)

# When every remaining image is leased to other volunteers, how soon to ask again.
RETRY_AFTER_SECONDS = 5


def _project_answer(project: Project, status_code: int = status.HTTP_200_OK) -> Response:
    project = selectors.project_with_labels(project_id=project.pk)
    progress = selectors.project_progress(project_ids=[project.pk])
    return Response(
        ProjectOutputSerializer(project, context={"progress": progress}).data, status=status_code
    )


# --- accounts ---------------------------------------------------------------------------------


class UserRegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    class UserRegisterInputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, write_only=True)
        email = serializers.EmailField(required=False, allow_blank=True)

    @extend_schema(
        request=UserRegisterInputSerializer,
        responses={
            201: inline_serializer(
                "RegisterOutput",
                {
                    "id": serializers.IntegerField(),
                    "username": serializers.CharField(),
                    "token": serializers.CharField(),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        data = self.UserRegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user, token = accounts.user_register(**data.validated_data)
        return Response(
            {"id": user.pk, "username": user.username, "token": token},
            status=status.HTTP_201_CREATED,
        )


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    class TokenObtainInputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField()
        password = serializers.CharField(write_only=True)

    @extend_schema(
        request=TokenObtainInputSerializer,
        responses={200: inline_serializer("TokenOutput", {"token": serializers.CharField()})},
    )
    def post(self, request: Request) -> Response:
        data = self.TokenObtainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise InvalidInput("Unable to sign in with that username and password.")
        return Response({"token": accounts.user_token(user=user)})


class LogoutApi(APIView):
    """Sign out: the caller's token is deleted and no longer authenticates."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: AuthenticatedRequest) -> Response:
        accounts.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "MeOutput",
                {
                    "id": serializers.IntegerField(),
                    "username": serializers.CharField(),
                    "role": serializers.CharField(),
                    "votes": serializers.IntegerField(),
                    "today": serializers.IntegerField(),
                    "decided_votes": serializers.IntegerField(),
                    "agreement": serializers.FloatField(allow_null=True),
                    "rank": serializers.IntegerField(allow_null=True),
                },
            )
        }
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        user = request.user
        role = User.Role.ADMIN if user.is_superuser else user.role
        return Response(
            {"id": user.pk, "username": user.username, "role": role}
            | selectors.user_stats(user=user)
        )


class UserRoleApi(APIView):
    permission_classes = [IsProjectAdmin]

    class UserRoleInputSerializer(serializers.Serializer[Any]):
        role = serializers.ChoiceField(choices=User.Role.choices)

    @extend_schema(
        request=UserRoleInputSerializer,
        responses={
            200: inline_serializer(
                "UserRoleOutput",
                {
                    "id": serializers.IntegerField(),
                    "username": serializers.CharField(),
                    "role": serializers.CharField(),
                },
            )
        },
    )
    def patch(self, request: AuthenticatedRequest, user_id: int) -> Response:
        data = self.UserRoleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = selectors.access_user_for_admin(user=request.user, user_id=user_id)
        accounts.user_set_role(user=user, role=data.validated_data["role"])
        return Response({"id": user.pk, "username": user.username, "role": user.role})


# --- projects and labels ----------------------------------------------------------------------


class ProjectInputSerializer(serializers.ModelSerializer[Project]):
    class Meta:
        model = Project
        fields = list(projects.PROJECT_FIELDS)
        # Uniqueness and policy rules are the service's to check.
        validators: list[Any] = []
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class ProjectListCreateApi(GenericAPIView[Project]):
    permission_classes = [ReadOrAdmin]
    serializer_class = ProjectOutputSerializer

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        queryset = selectors.projects_for_user(user=request.user)
        page = self.paginate_queryset(queryset)
        assert page is not None  # settings.REST_FRAMEWORK sets a pagination class
        progress = selectors.project_progress(project_ids=[p.pk for p in page])
        data = ProjectOutputSerializer(page, many=True, context={"progress": progress}).data
        return self.get_paginated_response(data)

    @extend_schema(request=ProjectInputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = ProjectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = projects.project_create(**data.validated_data)
        return _project_answer(project, status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    permission_classes = [ReadOrAdmin]

    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        return _project_answer(selectors.access_project(user=request.user, project_id=project_id))

    @extend_schema(request=ProjectInputSerializer, responses=ProjectOutputSerializer)
    def patch(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=project_id)
        data = ProjectInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        projects.project_update(project=project, **data.validated_data)
        return _project_answer(project)


# Compressed: 1,000 labels with their definitions are some 200 KB of JSON, a fifth of it sent.
@method_decorator(gzip_page, name="dispatch")
class LabelListCreateApi(APIView):
    permission_classes = [ReadOrAdmin]

    class LabelListCreateInputSerializer(serializers.Serializer[Any]):
        wnid = serializers.CharField(max_length=64)
        name = serializers.CharField(max_length=200)
        gloss = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "search",
                str,
                description="Only labels whose name, synonyms, wnid or gloss contain every "
                "word of it (case- and accent-insensitive).",
            )
        ],
        responses={200: LabelOutputSerializer(many=True), 304: None},
        description="With an ETag: send it back as If-None-Match for a 304 while the labels "
        "are unchanged.",
    )
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        search = request.query_params.get("search", "")
        if len(search) > 200:
            raise InvalidInput("A search may be at most 200 characters.", field="search")
        project = selectors.access_project(user=request.user, project_id=project_id)
        labels = selectors.label_catalog(project_id=project.pk)
        if search.strip():
            labels = selectors.labels_matching(labels, search)
        return conditional_response(request, labels)

    @extend_schema(request=LabelListCreateInputSerializer, responses={201: LabelOutputSerializer})
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=project_id)
        data = self.LabelListCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = projects.label_create(project=project, **data.validated_data)
        return Response(LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelImportApi(APIView):
    permission_classes = [IsProjectAdmin]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class LabelImportInputSerializer(serializers.Serializer[Any]):
        file = serializers.FileField(required=False, help_text="A synset mapping file.")
        text = serializers.CharField(required=False, help_text="Or the mapping as text.")

    @extend_schema(
        request=LabelImportInputSerializer,
        responses={
            201: inline_serializer(
                "LabelImportOutput",
                {
                    "created": serializers.IntegerField(),
                    "existing": serializers.IntegerField(),
                    "errors": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=project_id)
        data = self.LabelImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "file" in data.validated_data:
            raw = data.validated_data["file"].read(5 * 1024 * 1024 + 1)
            if len(raw) > 5 * 1024 * 1024:
                raise InvalidInput("A synset mapping file may be at most 5 MB.", field="file")
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InvalidInput("The mapping file is not UTF-8 text.", field="file") from None
        elif "text" in data.validated_data:
            text = data.validated_data["text"]
        else:
            raise InvalidInput("Send a synset mapping as `file` or `text`.", field="file")
        result = ingest.labels_import(project=project, text=text)
        return Response(
            {"created": result.created, "existing": result.existing, "errors": result.errors},
            status=status.HTTP_201_CREATED,
        )


# --- images -----------------------------------------------------------------------------------


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
        return [IsProjectAdmin()] if self.request.method == "POST" else [IsReviewer()]

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
        project = selectors.access_project(user=request.user, project_id=project_id)
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
        project = selectors.access_project(user=request.user, project_id=project_id)
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


class ImageFileApi(APIView):
    """The stored image, for those allowed to see it: its assignee, reviewers and admins."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: AuthenticatedRequest, image_id: int) -> FileResponse:
        image = selectors.access_image_file(user=request.user, image_id=image_id)
        response = FileResponse(image.file.open("rb"), as_attachment=False)
        response["Content-Type"] = f"image/{image.format.lower()}"
        # Served inline as an image only; never sniffed or run as a page.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response


# --- the volunteer loop -----------------------------------------------------------------------


class AssignmentLeaseApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={201: AssignmentOutputSerializer, 204: None},
        description="204 when nothing is left for this volunteer; with a Retry-After header "
        "when the remaining images are leased to others and may need this volunteer later.",
    )
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        # Its serving settings as this process read them up to READ_CACHE_SECONDS ago will do.
        project = selectors.access_project(user=request.user, project_id=project_id, recent_ok=True)
        assignment = serving.assignment_lease(project=project, user=request.user)
        if assignment is None:
            response = Response(status=status.HTTP_204_NO_CONTENT)
            if selectors.images_awaiting_others(project=project, user=request.user).exists():
                # Nothing free now, but open images are leased to others: ask again later.
                response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return Response(assignment_answer(assignment, project.pk), status=status.HTTP_201_CREATED)


class VoteSubmitApi(APIView):
    class VoteSubmitInputSerializer(serializers.Serializer[Any]):
        # `label` shadows Field.label in the stubs only (see serializers.SuggestionSerializer).
        label = serializers.IntegerField(  # type: ignore[assignment]
            allow_null=True, help_text='A label id, or null for "none of these".'
        )

    @extend_schema(
        request=VoteSubmitInputSerializer,
        responses={
            201: inline_serializer(
                "VoteOutput",
                {"id": serializers.IntegerField(), "image_state": serializers.CharField()},
            )
        },
    )
    def post(self, request: AuthenticatedRequest, assignment_id: int) -> Response:
        data = self.VoteSubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vote, image = voting.vote_submit(
            assignment_id=assignment_id, user=request.user, label_id=data.validated_data["label"]
        )
        return Response({"id": vote.pk, "image_state": image.state}, status=status.HTTP_201_CREATED)


class AssignmentSkipApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: AuthenticatedRequest, assignment_id: int) -> Response:
        serving.assignment_skip(assignment_id=assignment_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VoteUndoApi(APIView):
    @extend_schema(
        request=None,
        responses={200: AssignmentOutputSerializer},
        description="Take back your vote within a short window while it has decided nothing; "
        "the image is leased to you again.",
    )
    def post(self, request: AuthenticatedRequest, assignment_id: int) -> Response:
        assignment = voting.vote_undo(assignment_id=assignment_id, user=request.user)
        return Response(assignment_answer(assignment, assignment.image.project_id))
