"""Data values in the page's language (issue 18): image and export states, consensus
strategies, decision rules and flag reasons are stored and sent by the API in English (their
values never change), and shown by the dashboard, export, review and annotators pages in the
language the browser asks for."""

import re

import pytest

from annotate.flag_reasons import (
    DAWID_SKENE_PREFERS,
    DAWID_SKENE_PREFERS_LABEL,
    VERIFICATION_DISPUTED,
    flag_reason,
    flag_reason_display,
)
from annotate.models import AnnotatorStats, Export, Image, Project, User
from tests.export_helpers import decide
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}
IMAGE_STATES = {
    "open": "待标注",
    "consensus": "已达成共识",
    "disputed": "有争议",
    "reviewed": "已审核",
    "excluded": "已排除",
}
EXPORT_STATES = {
    "pending": "等待中",
    "running": "进行中",
    "done": "已完成",
    "failed": "失败",
    "expired": "已过期（文件已删除）",
}


def visible_text(html: str) -> str:
    """What a reader sees: the page without its scripts, styles and tags (attribute values and
    class names hold English on purpose)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def english_words(text: str, words) -> list[str]:
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", text, flags=re.I)]


@pytest.fixture
def project():
    project = ProjectFactory(name="鸟类", mode=Project.Mode.MAJORITY)
    label = LabelFactory(project=project, wnid="n01530575", name="brambling")
    for state in (Image.State.CONSENSUS, Image.State.REVIEWED, Image.State.EXCLUDED):
        decide(ImageFactory(project=project), None if state == "excluded" else label, state)
    ImageFactory(project=project)  # open
    decide(ImageFactory(project=project), None, Image.State.DISPUTED)
    return project


@pytest.fixture
def admin(client):
    user = UserFactory(username="管理者", role=User.Role.ADMIN, is_staff=True)
    client.force_login(user)
    return user


def test_the_dashboard_names_states_and_the_strategy_in_chinese(client, project, admin):
    page = visible_text(
        client.get(f"/projects/{project.pk}/dashboard/", **CHINESE).content.decode()
    )
    for chinese in IMAGE_STATES.values():
        assert chinese in page
    assert "规则：多数票" in page
    assert english_words(page, [*IMAGE_STATES, "majority", "dynamic"]) == []
    english = visible_text(
        client.get(f"/projects/{project.pk}/dashboard/", **ENGLISH).content.decode()
    )
    assert "Consensus" in english and "Policy: Majority" in english


def test_the_export_page_and_api_name_export_states_in_chinese(client, project, admin):
    exports = {
        state: Export.objects.create(project=project, name="birds", state=state, blur_faces=True)
        for state in EXPORT_STATES
    }
    page = visible_text(client.get(f"/projects/{project.pk}/export/", **CHINESE).content.decode())
    for chinese in EXPORT_STATES.values():
        assert chinese in page
    assert "人脸已模糊" in page and "随机种子" in page
    assert english_words(page, [*EXPORT_STATES, "faces blurred", "seed"]) == []
    # The API keeps the value and adds its name in the request's language, for the page's script.
    done = client.get(f"/api/exports/{exports['done'].pk}/", **CHINESE).json()
    assert (done["state"], done["state_display"]) == ("done", "已完成")
    done = client.get(f"/api/exports/{exports['done'].pk}/", **ENGLISH).json()
    assert (done["state"], done["state_display"]) == ("done", "Done")


def test_the_review_queue_names_rules_and_flag_reasons_in_chinese(client, project, admin):
    flagged = Image.objects.get(project=project, state=Image.State.CONSENSUS)
    Image.objects.filter(pk=flagged.pk).update(
        flagged_for_review=True,
        flag_reason=flag_reason(DAWID_SKENE_PREFERS_LABEL, label=7, confidence="83%"),
    )
    page = visible_text(client.get(f"/projects/{project.pk}/review/", **CHINESE).content.decode())
    assert "审核" in page and english_words(page, ["Review", "disputed", "Votes"]) == []

    items = {
        item["id"]: item
        for item in client.get(f"/api/projects/{project.pk}/review/", **CHINESE).json()["results"]
    }
    item = items[flagged.pk]
    assert item["flag_reason"] == "Dawid-Skene prefers label 7 (83%)"  # stored as it was
    assert item["flag_reason_display"] == "Dawid–Skene 模型更倾向于标签 7（83%）"
    assert (item["state"], item["state_display"]) == ("consensus", "已达成共识")
    assert (item["decision"]["rule"], item["decision"]["rule_display"]) == ("majority", "多数票")
    disputed = next(i for i in items.values() if i["state"] == "disputed")
    assert disputed["state_display"] == "有争议"
    english = client.get(f"/api/projects/{project.pk}/review/", **ENGLISH).json()["results"]
    assert {i["flag_reason_display"] for i in english} >= {"Dawid-Skene prefers label 7 (83%)"}


def test_the_annotators_page_is_all_chinese(client, project, admin):
    for name, accuracy in [("甲", 0.9), ("乙", 0.3)]:
        AnnotatorStats.objects.create(
            project=project, user=UserFactory(username=name), votes=4, estimated_accuracy=accuracy
        )
    page = visible_text(
        client.get(f"/projects/{project.pk}/annotators/", **CHINESE).content.decode()
    )
    assert "不可靠" in page and "正常" in page and "志愿者" in page
    assert english_words(page, ["unreliable", "ok", "Volunteer", "Votes", "Status"]) == []


@pytest.mark.parametrize(
    ("reason", "chinese"),
    [
        (
            flag_reason(VERIFICATION_DISPUTED, wnid="n01530575", yes=2, no=2),
            "n01530575 的核验有争议（2 票是，2 票否）",
        ),
        ("Dawid-Skene prefers none of these (91%)", "Dawid–Skene 模型更倾向于“都不是”（91%）"),
        (
            flag_reason(
                DAWID_SKENE_PREFERS,
                choice="\u201ctiger cat\u201d",
                confidence="93%",
                decided="none of these",
            ),
            "Dawid–Skene 模型更倾向于“tiger cat”（93%），而不是都不是",
        ),
        # An older wording, or a reason cut at the column's length: shown as stored.
        ("flagged by hand", "flagged by hand"),
    ],
)
def test_flag_reasons_read_back_in_the_active_language(reason, chinese):
    from django.utils import translation

    with translation.override("zh-hans"):
        assert flag_reason_display(reason) == chinese
    with translation.override("en"):
        assert flag_reason_display(reason) == reason
