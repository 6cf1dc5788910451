"""Reads that deserve a name. No writes here.

One module per area; each function is also importable from here (`selectors.project_get`):

- access: permission-checked getters (`access_*`), the only way a face fetches an object
  for a user, and how global roles and project teams combine.
- serving: the volunteer loop's reads (project, labels and suggestion, token owner).
- projects: projects and their labels, by id or by the keys commands take.
- review: the review queue and what it shows beside each image, decision history.
- stats: volunteers' figures, leaderboard, a project's activity.
- ml: verified labels, model versions and trainings, suggestions of many images.
- ingest: what ingest stored (near duplicates).
- exports: dataset exports.
"""

from annotate.selectors.access import (
    access_export,
    access_image_file,
    access_image_for_reviewer,
    access_image_original,
    access_project,
    access_user_for_admin,
    combined_role,
    holds_role_somewhere,
    member_roles,
    project_role,
    project_role_grants,
    visible_projects,
)
from annotate.selectors.exports import export_get, export_preview, project_exports
from annotate.selectors.ingest import near_duplicates_for_review
from annotate.selectors.ml import (
    project_active_model_id,
    project_model_versions,
    project_models_overview,
    project_verified_count,
    suggestions_for_images,
    verified_decisions,
)
from annotate.selectors.projects import (
    image_is_class_example,
    label_by_key,
    label_catalog,
    label_examples,
    labels_in_language,
    labels_matching,
    project_by_key,
    project_labels,
    project_members,
    project_progress,
    project_with_labels,
    projects_for_user,
    search_key,
)
from annotate.selectors.review import (
    ReviewDetails,
    decision_history,
    images_for_review,
    review_details,
    review_queue,
    vote_breakdowns,
)
from annotate.selectors.serving import (
    SUGGESTION_TOP,
    image_suggestion,
    images_awaiting_others,
    project_get,
    suggestion_of,
    token_created,
    user_for_token,
)
from annotate.selectors.stats import (
    leaderboard,
    project_active_volunteers,
    project_annotators,
    project_class_counts,
    project_votes_per_day,
    user_stats,
)

__all__ = [
    "SUGGESTION_TOP",
    "ReviewDetails",
    "access_export",
    "access_image_file",
    "access_image_for_reviewer",
    "access_image_original",
    "access_project",
    "access_user_for_admin",
    "combined_role",
    "decision_history",
    "holds_role_somewhere",
    "member_roles",
    "project_members",
    "project_role",
    "project_role_grants",
    "visible_projects",
    "export_get",
    "export_preview",
    "images_awaiting_others",
    "images_for_review",
    "image_is_class_example",
    "label_by_key",
    "label_examples",
    "image_suggestion",
    "label_catalog",
    "labels_in_language",
    "labels_matching",
    "search_key",
    "suggestion_of",
    "leaderboard",
    "near_duplicates_for_review",
    "project_active_model_id",
    "project_active_volunteers",
    "project_annotators",
    "project_by_key",
    "project_class_counts",
    "project_exports",
    "project_get",
    "project_labels",
    "project_model_versions",
    "project_models_overview",
    "project_progress",
    "project_verified_count",
    "project_votes_per_day",
    "project_with_labels",
    "projects_for_user",
    "review_details",
    "review_queue",
    "suggestions_for_images",
    "token_created",
    "user_for_token",
    "user_stats",
    "verified_decisions",
    "vote_breakdowns",
]
