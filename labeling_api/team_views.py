"""Project teams API (issue 19): a project's members and their roles there.

Global admins and the project's own admins manage a team; for anyone else a private project's
team is as missing as the project (404), a public one's is 403.
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import Project, ProjectMember
from annotate.services import teams
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamAdmin


class MemberOutputSerializer(serializers.ModelSerializer[ProjectMember]):
    user = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")

    class Meta:
        model = ProjectMember
        fields = ["user", "username", "role", "created_at"]


def _team_project(request: AuthenticatedRequest, project_id: int) -> Project:
    return selectors.access_project(
        user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
    )


class MemberListAddApi(GenericAPIView[ProjectMember]):
    permission_classes = [IsTeamAdmin]
    serializer_class = MemberOutputSerializer

    class MemberAddInputSerializer(serializers.Serializer[Any]):
        user = serializers.IntegerField(
            required=False, min_value=1, help_text="The user's id (or give `username`)."
        )
        username = serializers.CharField(required=False, max_length=150)
        role = serializers.ChoiceField(
            choices=ProjectMember.Role.choices, default=ProjectMember.Role.VOLUNTEER
        )

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = _team_project(request, project_id)
        page = self.paginate_queryset(selectors.project_members(project=project))
        return self.get_paginated_response(MemberOutputSerializer(page, many=True).data)

    @extend_schema(request=MemberAddInputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = _team_project(request, project_id)
        data = self.MemberAddInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = teams.member_add(
            project=project,
            role=data.validated_data["role"],
            user_id=data.validated_data.get("user"),
            username=data.validated_data.get("username"),
        )
        return Response(MemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    permission_classes = [IsTeamAdmin]

    class MemberChangeInputSerializer(serializers.Serializer[Any]):
        role = serializers.ChoiceField(choices=ProjectMember.Role.choices)

    @extend_schema(request=MemberChangeInputSerializer, responses=MemberOutputSerializer)
    def patch(self, request: AuthenticatedRequest, project_id: int, user_id: int) -> Response:
        project = _team_project(request, project_id)
        data = self.MemberChangeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = teams.member_change(
            project=project, user_id=user_id, role=data.validated_data["role"]
        )
        return Response(MemberOutputSerializer(member).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest, project_id: int, user_id: int) -> Response:
        project = _team_project(request, project_id)
        teams.member_remove(project=project, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
