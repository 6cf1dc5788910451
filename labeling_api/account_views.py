"""Accounts API: register, sign in and out, the caller's own record, users' roles."""

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import User
from annotate.services import accounts
from annotate.services.errors import InvalidInput
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsProjectAdmin
from labeling_api.throttles import AccountThrottle, AddressThrottle


class UserRegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type[BaseAuthentication]] = []
    throttle_classes = [AddressThrottle, AccountThrottle]

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
    throttle_classes = [AddressThrottle, AccountThrottle]

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


MeOutput = inline_serializer(
    "MeOutput",
    {
        "id": serializers.IntegerField(),
        "username": serializers.CharField(),
        "role": serializers.CharField(),
        "daily_goal": serializers.IntegerField(allow_null=True),
        "votes": serializers.IntegerField(),
        "today": serializers.IntegerField(),
        "decided_votes": serializers.IntegerField(),
        "agreement": serializers.FloatField(allow_null=True),
        "rank": serializers.IntegerField(allow_null=True),
    },
)


class MeApi(APIView):
    @extend_schema(responses={200: MeOutput})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(self._me(request.user))

    class MeUpdateInputSerializer(serializers.Serializer[Any]):
        daily_goal = serializers.IntegerField(
            allow_null=True, help_text="Votes a day you aim for; null: no goal."
        )

    @extend_schema(request=MeUpdateInputSerializer, responses={200: MeOutput})
    def patch(self, request: AuthenticatedRequest) -> Response:
        data = self.MeUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accounts.user_set_daily_goal(user=request.user, goal=data.validated_data["daily_goal"])
        return Response(self._me(request.user))

    @staticmethod
    def _me(user: User) -> dict[str, Any]:
        role = User.Role.ADMIN if user.is_superuser else user.role
        return {
            "id": user.pk,
            "username": user.username,
            "role": role,
            "daily_goal": user.daily_goal,
        } | selectors.user_stats(user=user)


class UserRoleApi(APIView):
    permission_classes = [IsProjectAdmin]

    class UserRoleInputSerializer(serializers.Serializer[Any]):
        role = serializers.ChoiceField(choices=User.Role.choices)
        # Demoting an admin must say so (409 without it).
        confirm = serializers.BooleanField(required=False, default=False)

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
        accounts.user_set_role(
            user=user, role=data.validated_data["role"], confirmed=data.validated_data["confirm"]
        )
        return Response({"id": user.pk, "username": user.username, "role": user.role})
