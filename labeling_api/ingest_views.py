"""Ingest views beyond the upload itself: the near duplicates an admin should look at."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from annotate import selectors
from annotate.models import Image, ProjectMember
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamAdmin
from labeling_api.serializers import ImageRefSerializer


class NearDuplicateOutputSerializer(ImageRefSerializer):
    near_duplicate_of = ImageRefSerializer(help_text="The earlier image it resembles.")
    distance = serializers.IntegerField(
        source="near_duplicate_distance", help_text="Hamming distance of the perceptual hashes."
    )

    class Meta:
        model = Image
        fields = [
            "id",
            "url",
            "original_name",
            "width",
            "height",
            "state",
            "near_duplicate_of",
            "distance",
            "created_at",
        ]


class NearDuplicateListApi(GenericAPIView[Image]):
    """Images stored although an earlier image of the project looks the same, newest first."""

    permission_classes = [IsTeamAdmin]
    serializer_class = NearDuplicateOutputSerializer

    @extend_schema(responses=NearDuplicateOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        page = self.paginate_queryset(selectors.near_duplicates_for_review(project=project))
        return self.get_paginated_response(NearDuplicateOutputSerializer(page, many=True).data)
