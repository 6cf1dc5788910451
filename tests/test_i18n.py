"""The pages in the volunteer's language (issue 18): Accept-Language, the header's switcher,
the scripts' catalogue, and label names imported and shown per language."""

import json

import pytest
from django.core.management import call_command

from annotate.models import Label
from annotate.services import ingest
from tests.factories import LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


@pytest.fixture
def heron_project():
    project = ProjectFactory(name="Birds")
    LabelFactory(project=project, wnid="n02009912", name="heron", names={"zh-hans": "苍鹭"})
    LabelFactory(project=project, wnid="n02002724", name="stork")
    return project


def test_the_labeling_page_follows_accept_language(client, heron_project):
    client.force_login(UserFactory())
    english = client.get(f"/projects/{heron_project.pk}/label/").content.decode()
    assert "Which label fits this image?" in english and 'lang="en"' in english
    assert ">heron<" in english and "苍鹭" not in english
    chinese = client.get(f"/projects/{heron_project.pk}/label/", **CHINESE).content.decode()
    assert "这张图片属于哪个标签？" in chinese and 'lang="zh-hans"' in chinese
    assert "Which label fits" not in chinese and "Skip" not in chinese
    # The translated name where the label has one, the English one where it has none.
    assert ">苍鹭<" in chinese and ">stork<" in chinese


@pytest.mark.parametrize("path", ["/", "/me/", "/accounts/login/", "/accounts/signup/"])
def test_every_page_has_its_chinese(client, path):
    if path != "/accounts/login/" and path != "/accounts/signup/":
        client.force_login(UserFactory())
    page = client.get(path, **CHINESE).content.decode()
    assert "众包标注" in page and "跳到正文" in page  # the header and the skip link


def test_the_switcher_sets_the_language_for_later_pages(client, heron_project):
    client.force_login(UserFactory())
    form = client.get("/").content.decode()
    assert 'action="/i18n/setlang/"' in form and 'name="language"' in form
    switched = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/me/"})
    assert switched.status_code == 302 and switched["Location"] == "/me/"
    assert "我的统计" in client.get("/me/").content.decode()  # English Accept-Language
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert "My stats" in client.get("/me/", **CHINESE).content.decode()


def test_the_scripts_catalogue_is_in_the_pages_language(client):
    voted = json.dumps("已投票：%s。")  # as the catalogue writes it, \\u-escaped
    chinese = client.get("/jsi18n/", **CHINESE)
    assert chinese.status_code == 200 and voted in chinese.content.decode()
    assert voted not in client.get("/jsi18n/").content.decode()
    again = client.get("/jsi18n/", HTTP_IF_MODIFIED_SINCE=chinese["Last-Modified"], **CHINESE)
    assert again.status_code == 304
    assert "no-cache" in chinese["Cache-Control"]


def test_the_label_list_api_gives_the_display_name(client, heron_project):
    client.force_login(UserFactory())
    url = f"/api/projects/{heron_project.pk}/labels/"
    english = {row["wnid"]: row for row in client.get(url).json()}
    assert english["n02009912"]["display_name"] == "heron"
    assert english["n02009912"]["names"] == {"zh-hans": "苍鹭"}
    chinese = client.get(url, **CHINESE)
    names = {row["wnid"]: row["display_name"] for row in chinese.json()}
    assert names == {"n02009912": "苍鹭", "n02002724": "stork"}
    # Each language has its own ETag, so a cached English list is never shown in Chinese.
    etag = client.get(url)["ETag"]
    assert chinese["ETag"] != etag
    assert client.get(url, HTTP_IF_NONE_MATCH=etag, **CHINESE).status_code == 200
    found = client.get(url, {"search": "苍鹭"}).json()
    assert [row["wnid"] for row in found] == ["n02009912"]


def test_the_mapping_files_name_columns_are_imported(tmp_path):
    project = ProjectFactory()
    mapping = tmp_path / "map.txt"
    mapping.write_text(
        "n02123045 tabby, tabby cat\tzh-hans=虎斑猫\n"
        "n02124075 Egyptian cat\n"
        "n02123159 tiger cat\tfr=chat tigré\n",
        encoding="utf-8",
    )
    call_command("import_labels", str(project.pk), str(mapping))
    labels = {label.wnid: label for label in Label.objects.filter(project=project)}
    assert labels["n02123045"].names == {"zh-hans": "虎斑猫"}
    assert labels["n02123045"].name == "tabby, tabby cat"
    assert labels["n02124075"].names == {}
    assert "n02123159" not in labels  # an unknown language: the line is reported

    again = ingest.labels_import(
        project=project, text="n02124075 Egyptian cat\tzh-hans=埃及猫\nn02123159 tiger cat\tfr=x\n"
    )
    assert (again.created, again.existing) == (0, 1)
    assert again.errors[0]["line"] == 2 and "unknown language 'fr'" in again.errors[0]["reason"]
    assert Label.objects.get(project=project, wnid="n02124075").names == {"zh-hans": "埃及猫"}


def test_the_demos_labels_carry_chinese_names():
    from annotate.management.commands.demo import SYNSETS

    project = ProjectFactory()
    result = ingest.labels_import(project=project, text=SYNSETS)
    assert result.errors == []
    names = dict(Label.objects.filter(project=project).values_list("wnid", "names"))
    assert names["circle"] == {"zh-hans": "圆形"} and len(names) == 4
