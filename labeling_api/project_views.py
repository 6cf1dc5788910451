"""Projects API: projects, their labels, and importing labels from a synset mapping."""

from typing import Any

from django.utils.decorators import method_decorator
from django.utils.translation import get_language
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import Project, ProjectMember
from annotate.services import ingest, projects
from annotate.services.errors import InvalidInput
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.conditional import conditional_response
from labeling_api.permissions import IsTeamAdmin, ReadOrAdmin, ReadOrTeamAdmin
from labeling_api.serializers import LabelOutputSerializer, ProjectOutputSerializer


def _project_answer(project: Project, status_code: int = status.HTTP_200_OK) -> Response:
    project = selectors.project_with_labels(project_id=project.pk)
    progress = selectors.project_progress(project_ids=[project.pk])
    return Response(
        ProjectOutputSerializer(project, context={"progress": progress}).data, status=status_code
    )


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
    permission_classes = [ReadOrTeamAdmin]

    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        return _project_answer(selectors.access_project(user=request.user, project_id=project_id))

    @extend_schema(request=ProjectInputSerializer, responses=ProjectOutputSerializer)
    def patch(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        data = ProjectInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        projects.project_update(project=project, **data.validated_data)
        return _project_answer(project)


# Compressed: 1,000 labels with their definitions are some 200 KB of JSON, a fifth of it sent.
@method_decorator(gzip_page, name="dispatch")
class LabelListCreateApi(APIView):
    permission_classes = [ReadOrTeamAdmin]

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
        # The ETag covers the display names, so each language has its own.
        return conditional_response(request, selectors.labels_in_language(labels, get_language()))

    @extend_schema(request=LabelListCreateInputSerializer, responses={201: LabelOutputSerializer})
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        data = self.LabelListCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = projects.label_create(project=project, **data.validated_data)
        return Response(LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelImportApi(APIView):
    permission_classes = [IsTeamAdmin]
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
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
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
