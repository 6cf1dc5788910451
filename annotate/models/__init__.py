"""Data and the invariants the database can enforce. Business rules live in annotate.services.

A module per area; every model (and the helpers other code and the migrations name) is
importable from here, so `from annotate.models import X` works for each of them.
"""

from annotate.models.accounts import User
from annotate.models.base import TimeStamped
from annotate.models.exports import Export, SplitAssignment
from annotate.models.images import Assignment, Image, ImageHashBand, image_upload_to
from annotate.models.jobs import QueuedJob
from annotate.models.ml import ActiveModel, ModelVersion, Suggestion, TrainingRun
from annotate.models.projects import Label, Project, ProjectMember, label_key_validator
from annotate.models.verification import Candidate, CandidateVote, Grid, GridItem
from annotate.models.votes import (
    NONE_KEY,
    AnnotatorStats,
    CrowdConfusion,
    Decision,
    VolunteerConfusion,
    Vote,
)

__all__ = [
    "NONE_KEY",
    "ActiveModel",
    "AnnotatorStats",
    "Assignment",
    "Candidate",
    "CrowdConfusion",
    "CandidateVote",
    "Decision",
    "Export",
    "Grid",
    "GridItem",
    "Image",
    "ImageHashBand",
    "Label",
    "ModelVersion",
    "Project",
    "ProjectMember",
    "QueuedJob",
    "SplitAssignment",
    "Suggestion",
    "TimeStamped",
    "TrainingRun",
    "User",
    "VolunteerConfusion",
    "Vote",
    "image_upload_to",
    "label_key_validator",
]
