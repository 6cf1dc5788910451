"""REST API of verification (issue 15): lease a grid of candidates, answer it."""

from typing import Any

from django.utils.translation import get_language
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import User
from annotate.models.projects import label_name_in
from annotate.selectors import verification as verification_reads
from annotate.services import verification
from labeling_api.serializers import image_url

_datetime = serializers.DateTimeField()


def _volunteer(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)  # IsAuthenticated let the request through
    return user


def grid_answer_body(view: dict[str, Any]) -> dict[str, Any]:
    """verification_selectors.grid_view() with image URLs, as the API shows a grid."""
    label = view["label"]
    return {
        "id": view["id"],
        "label": {
            "id": label["id"],
            "wnid": label["wnid"],
            "name": label["name"],
            "display_name": label_name_in(label["name"], label["names"], get_language()),
            "gloss": label["gloss"],
            "examples": [image_url(image_id) for image_id in label["examples"]],
        },
        "items": [
            {"id": item["id"], "image": item["image"] | {"url": image_url(item["image"]["id"])}}
            for item in view["items"]
        ],
        "expires_at": _datetime.to_representation(view["expires_at"]),
    }


_ImageShape = inline_serializer(
    "GridImage",
    {
        "id": serializers.IntegerField(),
        "url": serializers.CharField(),
        "width": serializers.IntegerField(),
        "height": serializers.IntegerField(),
    },
)
GridOutput = inline_serializer(
    "GridOutput",
    {
        "id": serializers.IntegerField(),
        "label": inline_serializer(
            "GridLabel",
            {
                "id": serializers.IntegerField(),
                "wnid": serializers.CharField(),
                "name": serializers.CharField(),
                "display_name": serializers.CharField(
                    help_text="The name in the request's language."
                ),
                "gloss": serializers.CharField(),
                "examples": serializers.ListField(child=serializers.CharField()),
            },
        ),
        "items": inline_serializer(
            "GridItemOutput",
            {"id": serializers.IntegerField(), "image": _ImageShape},
            many=True,
        ),
        "expires_at": serializers.DateTimeField(),
    },
)


class GridLeaseApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={201: GridOutput, 204: None},
        description="A grid of one label's candidate images to verify: mark those that show "
        "it. 204 when nothing is left for this volunteer.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        volunteer = _volunteer(request)
        project = selectors.access_project(user=volunteer, project_id=project_id)
        grid = verification.grid_lease(project=project, user=volunteer)
        if grid is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = grid_answer_body(verification_reads.grid_view(grid=grid))
        return Response(body, status=status.HTTP_201_CREATED)


class GridAnswerApi(APIView):
    class GridAnswerInputSerializer(serializers.Serializer[Any]):
        yes = serializers.ListField(
            child=serializers.IntegerField(min_value=1),
            allow_empty=True,
            max_length=100,
            help_text="The ids of the items that show the label; the others count as no.",
        )

    @extend_schema(
        request=GridAnswerInputSerializer,
        responses={
            201: inline_serializer("GridAnswerOutput", {"decided": serializers.IntegerField()})
        },
        description="400 for an item not in the grid, 403 for another volunteer's grid, 409 "
        "when it was answered already (or expired and was given to others).",
    )
    def post(self, request: Request, grid_id: int) -> Response:
        data = self.GridAnswerInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = verification.grid_answer(
            grid_id=grid_id, user=_volunteer(request), yes_item_ids=data.validated_data["yes"]
        )
        return Response({"decided": result.decided}, status=status.HTTP_201_CREATED)


class GridReleaseApi(APIView):
    @extend_schema(
        request=None,
        responses={204: None},
        description="Hand back a grid you will not answer (the page was hidden or closed): its "
        "candidates go back to the pool at once. Nothing changes for a grid already answered "
        "or expired; 403 for another volunteer's grid.",
    )
    def post(self, request: Request, grid_id: int) -> Response:
        verification.grid_release(grid_id=grid_id, user=_volunteer(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
