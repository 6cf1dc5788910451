"""A volunteer whose browser asks for Chinese labels in Chinese (issue 18): the page, the label
names and the script's messages; the header's switcher changes the language; after a click the
focus stays on the page and a live region says what happened; a reviewer reads the decision's
rule and the flag's reason in Chinese."""

import pytest

from annotate.flag_reasons import DAWID_SKENE_PREFERS_LABEL, flag_reason
from annotate.models import Image, Label, User, Vote
from tests.browser.test_labeling_page import make_project, shown_assignment
from tests.export_helpers import decide
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.postgresql]

PASSWORD = "Lab3ling-is-fun!"


def test_a_chinese_browser_labels_in_chinese_and_can_switch(
    transactional_db, browser, live_server, screenshot_path
):
    project, (heron, stork) = make_project(name="Birds", label_names=["heron", "stork"], n_images=3)
    Label.objects.filter(pk=heron.pk).update(names={"zh-hans": "苍鹭"})
    user = UserFactory(username="li")
    user.set_password(PASSWORD)
    user.save()
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1100, "height": 700}, locale="zh-CN"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # Signing in, in Chinese.
        page.goto(f"/accounts/login/?next=/projects/{project.pk}/label/")
        assert page.locator("h1").inner_text() == "登录"
        page.fill("#id_username", "li")
        page.fill("#id_password", PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"**/projects/{project.pk}/label/")

        first = shown_assignment(page)
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        assert page.locator("h1").inner_text().startswith("这张图片属于哪个标签？")
        heron_button = page.locator(f"#labels button[data-label='{heron.pk}']")
        assert "苍鹭" in heron_button.inner_text()
        assert "stork" in page.locator(f"#labels button[data-label='{stork.pk}']").inner_text()
        page.screenshot(path=str(screenshot_path("label-chinese-browser.png")))

        # A click votes; the focus goes to the image (not lost to the page), and the live
        # region says, in Chinese, what was saved and that a new image is on screen.
        heron_button.click()
        page.wait_for_function(
            "(before) => document.getElementById('image').dataset.assignment !== before",
            arg=str(first),
        )
        page.wait_for_function("() => document.getElementById('count').textContent === '1'")
        assert Vote.objects.get(assignment_id=first).label_id == heron.pk
        assert page.evaluate("() => document.activeElement.matches('figure.frame')")
        said = page.locator("#announcer").inner_text()
        assert "已投票：苍鹭。" in said and "图片已显示" in said, said

        # The header's switcher: English from now on, on this page and the next.
        page.select_option("#language-select", "en")
        page.get_by_role("button", name="切换").click()
        page.wait_for_function("() => document.documentElement.lang === 'en'")
        assert page.locator("h1").inner_text().startswith("Which label fits this image?")
        assert "heron" in page.locator(f"#labels button[data-label='{heron.pk}']").inner_text()
        page.goto("/me/")
        assert page.locator("h1").inner_text() == "My stats"
        assert errors == []
    finally:
        context.close()


def test_a_chinese_reviewer_reads_rules_and_flag_reasons_in_chinese(
    transactional_db, browser, live_server
):
    project, (heron, _) = make_project(name="Birds", label_names=["heron", "stork"], n_images=1)
    image = Image.objects.get(project=project)
    decide(image, heron)
    Image.objects.filter(pk=image.pk).update(
        flagged_for_review=True,
        flag_reason=flag_reason(DAWID_SKENE_PREFERS_LABEL, label=heron.pk, confidence="83%"),
    )
    reviewer = UserFactory(username="wang", role=User.Role.REVIEWER)
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1100, "height": 700}, locale="zh-CN"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/accounts/login/")
        page.fill("#id_username", reviewer.username)
        page.fill("#id_password", "correct-horse-battery")
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/")
        page.goto(f"/projects/{project.pk}/review/")
        page.wait_for_function("() => document.getElementById('why').textContent !== ''")
        why = page.locator("#why").inner_text()
        assert f"Dawid–Skene 模型更倾向于标签 {heron.pk}（83%）" in why, why
        assert "多数票" in why and "majority" not in why and "prefers" not in why, why
        assert errors == []
    finally:
        context.close()
