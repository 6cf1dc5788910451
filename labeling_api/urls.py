from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import annotate.converters  # noqa: F401  (registers the `id` path converter)
from labeling_api import (
    account_views,
    assignment_views,
    image_views,
    ingest_views,
    ml_views,
    project_views,
    review_views,
)

app_name = "api"

# Django tries the patterns in order: the volunteer loop's two first (a lease and a vote per
# label), then the rest.
urlpatterns = [
    path(
        "projects/<id:project_id>/assignments/",
        assignment_views.AssignmentLeaseApi.as_view(),
        name="assignments",
    ),
    path(
        "assignments/<id:assignment_id>/vote/",
        assignment_views.VoteSubmitApi.as_view(),
        name="vote",
    ),
    path("auth/register/", account_views.UserRegisterApi.as_view(), name="register"),
    path("auth/token/", account_views.TokenObtainApi.as_view(), name="token"),
    path("auth/logout/", account_views.LogoutApi.as_view(), name="logout"),
    path("me/", account_views.MeApi.as_view(), name="me"),
    path("users/<id:user_id>/", account_views.UserRoleApi.as_view(), name="user-role"),
    path("projects/", project_views.ProjectListCreateApi.as_view(), name="project-list"),
    path(
        "projects/<id:project_id>/", project_views.ProjectDetailApi.as_view(), name="project-detail"
    ),
    path(
        "projects/<id:project_id>/labels/",
        project_views.LabelListCreateApi.as_view(),
        name="labels",
    ),
    path(
        "projects/<id:project_id>/labels/import/",
        project_views.LabelImportApi.as_view(),
        name="labels-import",
    ),
    path(
        "projects/<id:project_id>/images/", image_views.ImageListUploadApi.as_view(), name="images"
    ),
    path(
        "projects/<id:project_id>/images/near-duplicates/",
        ingest_views.NearDuplicateListApi.as_view(),
        name="images-near-duplicates",
    ),
    path(
        "assignments/<id:assignment_id>/skip/",
        assignment_views.AssignmentSkipApi.as_view(),
        name="skip",
    ),
    path(
        "assignments/<id:assignment_id>/release/",
        assignment_views.AssignmentReleaseApi.as_view(),
        name="release",
    ),
    path(
        "assignments/<id:assignment_id>/undo/", assignment_views.VoteUndoApi.as_view(), name="undo"
    ),
    path("images/<id:image_id>/file/", image_views.ImageFileApi.as_view(), name="image-file"),
    path(
        "images/<id:image_id>/original/",
        image_views.ImageOriginalApi.as_view(),
        name="image-original",
    ),
    path("projects/<id:project_id>/review/", review_views.ReviewQueueApi.as_view(), name="review"),
    path(
        "projects/<id:project_id>/annotators/",
        review_views.AnnotatorListApi.as_view(),
        name="annotators",
    ),
    path(
        "images/<id:image_id>/decision/", review_views.ImageDecisionApi.as_view(), name="decision"
    ),
    path("projects/<id:project_id>/models/", ml_views.ProjectModelsApi.as_view(), name="models"),
    path(
        "projects/<id:project_id>/models/train/",
        ml_views.ModelTrainApi.as_view(),
        name="models-train",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI: its script from a URL (the split view), but its page and widgets style
    # themselves inline and draw icons from data: URLs, so this page alone allows those.
    path(
        "docs/",
        csp_update({"style-src": ["'self'", "'unsafe-inline'"], "img-src": ["'self'", "data:"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api:schema")
        ),
        name="docs",
    ),
]

# Exports (issue 6), kept in their own module and block so they merge on their own.
from labeling_api import export_views  # noqa: E402

urlpatterns += [
    path(
        "projects/<id:project_id>/exports/",
        export_views.ExportListCreateApi.as_view(),
        name="exports",
    ),
    path(
        "projects/<id:project_id>/exports/preview/",
        export_views.ExportPreviewApi.as_view(),
        name="exports-preview",
    ),
    path("exports/<id:export_id>/", export_views.ExportDetailApi.as_view(), name="export-detail"),
    path(
        "exports/<id:export_id>/download/",
        export_views.ExportDownloadApi.as_view(),
        name="export-download",
    ),
    path(
        "exports/<id:export_id>/manifest/",
        export_views.ExportManifestApi.as_view(),
        name="export-manifest",
    ),
]

# Verification, the candidate-grid task (issue 15).
from labeling_api import verification_views  # noqa: E402

urlpatterns += [
    path(
        "projects/<id:project_id>/grids/", verification_views.GridLeaseApi.as_view(), name="grids"
    ),
    path(
        "grids/<id:grid_id>/answers/",
        verification_views.GridAnswerApi.as_view(),
        name="grid-answers",
    ),
    path(
        "grids/<id:grid_id>/release/",
        verification_views.GridReleaseApi.as_view(),
        name="grid-release",
    ),
]

# Project teams (issue 19).
from labeling_api import team_views  # noqa: E402

urlpatterns += [
    path(
        "projects/<id:project_id>/members/",
        team_views.MemberListAddApi.as_view(),
        name="members",
    ),
    path(
        "projects/<id:project_id>/members/<id:user_id>/",
        team_views.MemberDetailApi.as_view(),
        name="member-detail",
    ),
]
