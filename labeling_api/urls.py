from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from labeling_api import ml_views, views

app_name = "api"

urlpatterns = [
    path("auth/register/", views.UserRegisterApi.as_view(), name="register"),
    path("auth/token/", views.TokenObtainApi.as_view(), name="token"),
    path("me/", views.MeApi.as_view(), name="me"),
    path("users/<int:user_id>/", views.UserRoleApi.as_view(), name="user-role"),
    path("projects/", views.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<int:project_id>/", views.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<int:project_id>/labels/", views.LabelListCreateApi.as_view(), name="labels"),
    path(
        "projects/<int:project_id>/labels/import/",
        views.LabelImportApi.as_view(),
        name="labels-import",
    ),
    path("projects/<int:project_id>/images/", views.ImageListUploadApi.as_view(), name="images"),
    path(
        "projects/<int:project_id>/assignments/",
        views.AssignmentLeaseApi.as_view(),
        name="assignments",
    ),
    path("assignments/<int:assignment_id>/vote/", views.VoteSubmitApi.as_view(), name="vote"),
    path("assignments/<int:assignment_id>/skip/", views.AssignmentSkipApi.as_view(), name="skip"),
    path("images/<int:image_id>/file/", views.ImageFileApi.as_view(), name="image-file"),
    path("projects/<int:project_id>/models/", ml_views.ProjectModelsApi.as_view(), name="models"),
    path(
        "projects/<int:project_id>/models/train/",
        ml_views.ModelTrainApi.as_view(),
        name="models-train",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
