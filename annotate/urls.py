from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import last_modified
from django.views.i18n import JavaScriptCatalog

import annotate.converters  # noqa: F401  (registers the `id` path converter)
from annotate import verify_page, views
from labeling_api.throttles import throttle_posts

STARTED = timezone.now().replace(microsecond=0)

# Django tries the patterns in order: the API, where the volunteer loop's requests go, first.
urlpatterns = [
    path("api/", include("labeling_api.urls")),
    path("", views.project_list, name="project-list"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/<id:project_id>/label/", views.label_page, name="label"),
    path("projects/<id:project_id>/review/", views.review_page, name="review"),
    path("projects/<id:project_id>/dashboard/", views.dashboard_page, name="dashboard"),
    path("projects/<id:project_id>/annotators/", views.annotators_page, name="annotators"),
    path("me/", views.my_stats, name="my-stats"),
    path("projects/<id:project_id>/export/", views.export_page, name="export"),
    path("projects/<id:project_id>/verify/", verify_page.verify_page, name="verify"),
    path("healthz", views.healthz, name="healthz"),
    # The admin's sign-in within the same limits as the sign-in page (its session opens every
    # page); before admin.site.urls, whose own "login" this shadows.
    path("admin/login/", throttle_posts(per_account=True)(admin.site.login)),
    path("admin/", admin.site.urls),
    # The header's language switcher posts here (Django's set_language view).
    path("i18n/", include("django.conf.urls.i18n")),
    # The pages' scripts' messages in the active language (gettext() in static/annotate/*.js).
    # Pages ask with ?lang= (one cached copy per language); browsers revalidate each time and
    # get a 304 until the server restarts, perhaps with new translations.
    path(
        "jsi18n/",
        cache_control(no_cache=True)(
            last_modified(lambda request: STARTED)(JavaScriptCatalog.as_view())
        ),
        name="javascript-catalog",
    ),
]

# Django's own errors: JSON in the API's error shape under /api/, the usual pages elsewhere.
handler400 = "labeling_api.error_handlers.bad_request"
handler403 = "labeling_api.error_handlers.permission_denied"
handler404 = "labeling_api.error_handlers.page_not_found"
handler500 = "labeling_api.error_handlers.server_error"

if settings.BENCH_FLOOR_ENDPOINT:
    from annotate import benchmark

    urlpatterns.append(path("bench/floor/<id:image_id>/", benchmark.floor, name="bench-floor"))
