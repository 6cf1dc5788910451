"""The volunteer loop's API: lease an image, vote on it, skip it, take a vote back."""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.services import serving, voting
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.serializers import AssignmentOutputSerializer, assignment_answer

# When every remaining image is leased to other volunteers, how soon to ask again.
RETRY_AFTER_SECONDS = 5


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


class AssignmentReleaseApi(APIView):
    @extend_schema(
        request=None,
        responses={204: None},
        description="Hand back a lease you will not answer (the page was hidden or closed): "
        "the image goes back to the pool at once. Nothing changes for a lease already "
        "answered, skipped or expired.",
    )
    def post(self, request: AuthenticatedRequest, assignment_id: int) -> Response:
        serving.assignment_release(assignment_id=assignment_id, user=request.user)
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
