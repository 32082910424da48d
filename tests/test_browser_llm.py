"""The fine-tuning dashboard as a user sees it under `marimo run`, in headless Chromium."""

import pytest

from tests.browser_util import browser_available, chromium, marimo_server, screenshot_all

pytestmark = pytest.mark.skipif(not browser_available(), reason="needs playwright and Debian's chromium")


def choose_tiny_model(page):
    """Pick the offline model in the settings form and apply it (no hub on CI)."""
    page.get_by_text("Apply settings").first.wait_for(timeout=90_000)
    page.locator("select").first.select_option(label="tiny offline GPT-2 (no download)")
    page.get_by_role("button", name="Apply settings").click()
    page.wait_for_timeout(1500)


def test_train_runs_all_seven_steps_and_offers_the_adapter():
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_tiny_model(page)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Step 7 complete").first.wait_for(timeout=240_000)
        page.wait_for_timeout(1500)
        for step in range(1, 8):
            assert page.get_by_text(f"Step {step} complete").count() >= 1, (
                f"step {step} not shown as complete"
            )
        assert page.locator(".vega-embed").count() >= 2  # loss and memory charts
        assert page.get_by_text("Step 6 complete").count() == 1
        screenshot_all(page, "llm_run", parts=6)


def test_a_bad_upload_gets_a_clear_message_and_the_app_keeps_working():
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_text("Apply settings").first.wait_for(timeout=90_000)
        file_input = page.locator("input[type=file]").first
        file_input.set_input_files(
            files=[{"name": "data.csv", "mimeType": "text/csv", "buffer": b"question,answer\nhi,there\n"}]
        )
        page.get_by_text("upload", exact=True).first.click()  # data source: upload
        page.get_by_role("button", name="Apply settings").click()
        page.get_by_text("needs columns").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        screenshot_all(page, "llm_bad_upload", parts=3)
        # The app names the missing columns and still renders the rest of the page.
        assert page.get_by_text("missing ['prompt', 'response']").count() >= 1
        assert page.get_by_text("Why LoRA works").count() >= 1


def test_an_unreachable_model_hub_falls_back_to_the_offline_model_and_says_so(tmp_path):
    """The default model is the hub's gpt2: with the hub out of reach and nothing cached, Train still works."""
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with marimo_server("llm_finetuning_dashboard.py", env=offline) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_text("Apply settings").first.wait_for(timeout=90_000)
        page.get_by_role("button", name="Train", exact=True).click()  # defaults: gpt2 from the hub
        page.get_by_text("Step 7 complete").first.wait_for(timeout=240_000)
        assert page.get_by_text("cannot be reached").count() >= 1
        assert page.get_by_text("Falling back to the tiny offline GPT-2").count() >= 1
        assert page.get_by_text("tiny-offline-gpt2").count() >= 1
        screenshot_all(page, "llm_hub_unreachable", parts=2)
