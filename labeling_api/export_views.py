"""REST API for exports (PRODUCT.md sections 6 and 7): start one, watch it, download it."""

from typing import Any

from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import Export, ProjectMember
from annotate.services import export as export_service
from annotate.services.errors import InvalidInput
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamAdmin


class ExportOutputSerializer(serializers.ModelSerializer[Export]):
    state_display = serializers.CharField(
        source="get_state_display",
        read_only=True,
        help_text="The state's name in the request's language, for pages.",
    )
    progress = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "project",
            "name",
            "state",
            "state_display",
            "val_fraction",
            "seed",
            "val_layout",
            "resize",
            "include_gold",
            "min_per_class",
            "blur_faces",
            "progress",
            "counts",
            "size_bytes",
            "error",
            "attempts",
            "created_at",
            "finished_at",
            "urls",
        ]

    def get_progress(self, export: Export) -> dict[str, Any]:
        total = export.progress_total
        fraction = (
            1.0
            if export.state == Export.State.DONE
            else (export.progress_done / total if total else 0.0)
        )
        return {"done": export.progress_done, "total": total, "fraction": round(fraction, 4)}

    def get_urls(self, export: Export) -> dict[str, str]:
        urls = {"self": f"/api/exports/{export.pk}/"}
        if export.state == Export.State.DONE:
            urls["download"] = f"/api/exports/{export.pk}/download/"
            urls["download_gzip"] = f"/api/exports/{export.pk}/download/?compress=gzip"
            urls["manifest"] = f"/api/exports/{export.pk}/manifest/"
        return urls


class ExportListCreateApi(GenericAPIView[Export]):
    permission_classes = [IsTeamAdmin]
    serializer_class = ExportOutputSerializer

    class ExportCreateInputSerializer(serializers.Serializer[Any]):
        val_fraction = serializers.FloatField(default=0.1, help_text="Share of each class in val.")
        seed = serializers.IntegerField(default=0, min_value=0, max_value=2**63 - 1)
        val_layout = serializers.ChoiceField(choices=Export.ValLayout.choices, default="folders")
        resize = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=8,
            max_value=8192,
            help_text="Shorter side in pixels; images are never enlarged.",
        )
        include_gold = serializers.BooleanField(default=False)
        min_per_class = serializers.IntegerField(default=2, min_value=2, max_value=10**6)
        blur_faces = serializers.BooleanField(
            default=False,
            help_text="Blur the faces OpenCV's face detector finds (those files are re-encoded).",
        )

    @extend_schema(responses=ExportOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        page = self.paginate_queryset(selectors.project_exports(project=project))
        return self.get_paginated_response(ExportOutputSerializer(page, many=True).data)

    @extend_schema(request=ExportCreateInputSerializer, responses={202: ExportOutputSerializer})
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        if not isinstance(request.data, dict):
            raise InvalidInput("Send the export options as an object.")
        data = self.ExportCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = export_service.export_create(
            project=project, user=request.user, **data.validated_data
        )
        return Response(ExportOutputSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportPreviewApi(APIView):
    """What an export with the given options would hold, before it starts."""

    permission_classes = [IsTeamAdmin]

    class ExportPreviewInputSerializer(serializers.Serializer[Any]):
        include_gold = serializers.BooleanField(default=False)
        min_per_class = serializers.IntegerField(default=2, min_value=2, max_value=10**6)

    @extend_schema(
        parameters=[ExportPreviewInputSerializer],
        responses={
            200: inline_serializer(
                "ExportPreview",
                {
                    "images": serializers.IntegerField(),
                    "classes": serializers.IntegerField(),
                    "left_out": inline_serializer(
                        "ExportPreviewLeftOut",
                        {
                            "gold": serializers.IntegerField(),
                            "small_classes": serializers.IntegerField(),
                            "small_class_images": serializers.IntegerField(),
                        },
                    ),
                },
            )
        },
    )
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        data = self.ExportPreviewInputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        return Response(selectors.export_preview(project=project, **data.validated_data))


class ExportDetailApi(APIView):
    permission_classes = [IsTeamAdmin]

    @extend_schema(responses=ExportOutputSerializer)
    def get(self, request: AuthenticatedRequest, export_id: int) -> Response:
        export = selectors.access_export(user=request.user, export_id=export_id)
        return Response(ExportOutputSerializer(export).data)


class ExportDownloadApi(APIView):
    """The dataset as a tar, written while it is sent (no copy in memory or on disk)."""

    permission_classes = [IsTeamAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("compress", str, enum=["gzip"], required=False)],
        responses={
            (200, "application/x-tar"): bytes,
            302: OpenApiResponse(
                description="In an object store: a short-lived signed URL (Location) to it."
            ),
        },
    )
    def get(
        self, request: AuthenticatedRequest, export_id: int
    ) -> StreamingHttpResponse | HttpResponseRedirect:
        compress = request.query_params.get("compress", "")
        if compress not in ("", "none", "gzip"):
            raise InvalidInput("compress must be 'gzip' or left out.", field="compress")
        export = selectors.access_export(user=request.user, export_id=export_id)
        download = export_service.export_download(export=export, compress=compress == "gzip")
        if download.url is not None:
            # In an object store: the client fetches it there, by a URL valid a short while.
            return HttpResponseRedirect(download.url)
        response = StreamingHttpResponse(download.chunks, content_type=download.content_type)
        if download.size is not None:
            response["Content-Length"] = str(download.size)
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


class ExportManifestApi(APIView):
    permission_classes = [IsTeamAdmin]

    @extend_schema(
        responses={200: inline_serializer("ExportManifest", {"files": serializers.DictField()})}
    )
    def get(self, request: AuthenticatedRequest, export_id: int) -> FileResponse:
        export = selectors.access_export(user=request.user, export_id=export_id)
        manifest = export_service.export_manifest_open(export=export)
        return FileResponse(manifest, content_type="application/json")
