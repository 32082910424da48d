"""The fine-tuning dashboard as a user sees it under `marimo run`, in headless Chromium."""

import pytest

from tests.browser_util import SHOTS, browser_available, chromium, marimo_server, screenshot_all

# In CI (`make test`): minutes on a busy 2-core machine, small settings. `slow` is kept for tests too long for CI.
pytestmark = [pytest.mark.skipif(not browser_available(), reason="needs playwright and Debian's chromium")]


def choose_small_settings(page, tiny=True):
    """One epoch (10 steps), the offline model unless `tiny=False`: small work for a busy CI machine.

    There is no apply step: Train uses what the controls show, and the summary line follows each change.
    """
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
    selects = page.locator("select")  # the dropdowns in order: model, precision, lr, epochs, ...
    if tiny:
        selects.nth(0).select_option(label="tiny offline GPT-2 (no download)")
    selects.nth(3).select_option(label="1")
    page.get_by_text("epochs 1 ·").first.wait_for(timeout=60_000)  # the settings summary line


def test_train_runs_all_seven_steps_and_offers_the_adapter():
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_small_settings(page)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Step 7 complete").first.wait_for(timeout=600_000)
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
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
        assert page.get_by_text("at most 5 MB").count() >= 1  # the limit is said before anything is uploaded
        file_input = page.locator("input[type=file]").first
        file_input.set_input_files(
            files=[{"name": "data.csv", "mimeType": "text/csv", "buffer": b"question,answer\nhi,there\n"}]
        )
        page.get_by_text("upload", exact=True).first.click()  # data source: upload
        page.get_by_text("needs columns").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1000)
        screenshot_all(page, "llm_bad_upload", parts=3)
        # The app names the missing columns and still renders the rest of the page.
        assert page.get_by_text("missing ['prompt', 'response']").count() >= 1
        assert page.get_by_text("Why LoRA works").count() >= 1


def test_an_unreachable_model_hub_falls_back_to_the_offline_model_and_says_so(tmp_path):
    """The hub's gpt2 with the hub out of reach and nothing cached: the page says so before Train, and Train
    still works on the offline model."""
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with marimo_server("llm_finetuning_dashboard.py", env=offline) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_small_settings(page, tiny=False)
        page.locator("select").nth(0).select_option(label="gpt2 (124M)")
        page.get_by_text("Train will fall back").first.wait_for(timeout=60_000)  # said before Train
        page.get_by_role("button", name="Train", exact=True).click()  # gpt2 from the hub, one epoch
        page.get_by_text("Step 7 complete").first.wait_for(timeout=600_000)
        assert page.get_by_text("cannot be reached").count() >= 1
        assert page.get_by_text("Falling back to the tiny offline GPT-2").count() >= 1
        assert page.get_by_text("tiny-offline-gpt2").count() >= 1
        screenshot_all(page, "llm_hub_unreachable", parts=2)


def test_train_uses_the_settings_on_screen_without_any_apply_step():
    """A newcomer picks a model and an epoch count and presses Train: the run must use them, not the defaults."""
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
        selects = page.locator("select")
        selects.nth(0).select_option(label="tiny offline GPT-2 (no download)")
        selects.nth(3).select_option(label="1")
        page.get_by_role("button", name="Train", exact=True).click()  # straight away: nothing applied
        page.get_by_text("Step 7 complete").first.wait_for(timeout=600_000)
        assert page.get_by_text("Falling back").count() == 0  # the tiny model was chosen, not a fallback
        assert page.get_by_text("tiny-offline-gpt2").count() >= 1
        assert page.get_by_text("× 1 epochs").count() >= 1  # step 4: steps/epoch × 1 epochs
        screenshot_all(page, "llm_on_screen_settings", parts=2)


def test_several_tabs_opened_at_once_on_a_fresh_server_all_come_up_whole():
    """Sessions are threads of one process: their first imports of torch/transformers must not race."""
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        pages = [browser.new_page(viewport={"width": 1280, "height": 1000}) for _ in range(3)]
        for page in pages:  # each goto returns once the page loads; the sessions start together
            page.goto(url, wait_until="commit")
        for index, page in enumerate(pages):
            page.get_by_role("button", name="Train", exact=True).wait_for(timeout=300_000)
            page.get_by_text("Why LoRA works").first.wait_for(timeout=120_000)
            assert page.locator("select").count() >= 5, f"tab {index} has no settings controls"
            assert page.get_by_text("ImportError").count() == 0
            assert page.get_by_text("partially initialized").count() == 0
        screenshot_all(pages[-1], "llm_three_tabs", parts=1)


def test_try_it_generates_with_the_trained_adapter_beside_the_base_model():
    """Generate before any Train says there is no adapter yet; after a one-epoch run a typed prompt streams into
    the base and fine-tuned panes, with the measured cost table below them; Generate again runs again."""
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_small_settings(page)
        prompt = page.get_by_placeholder("e.g. Spell 'lemon' backwards.")
        prompt.fill("Spell 'lemon' backwards.")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("No adapter yet").first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Step 7 complete").first.wait_for(timeout=600_000)
        # the picker lists the adapter step 7 kept (an <option>: attached, not visible)
        page.locator("option", has_text="tiny-offline-gpt2 · r=8").first.wait_for(
            state="attached", timeout=60_000
        )
        prompt.fill("What is 12 + 5?")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("What inference costs on").first.wait_for(timeout=300_000)
        page.wait_for_timeout(1000)
        assert page.get_by_text("No adapter yet").count() == 0
        assert page.get_by_text("disable_adapter():", exact=False).count() >= 1  # the base pane's title
        assert page.get_by_text("Fine-tuned (loaded with").count() >= 1
        assert page.get_by_text("merged (merge_and_unload)").count() >= 1  # the cost table's second row
        assert page.get_by_text("On a CPU there is no card").count() >= 1
        assert page.get_by_text("/tmp/").count() == 0  # no server path anywhere
        page.get_by_text("What inference costs on").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "llm_try_it.png"))
        # The same settings again: Generate runs again (a form re-submitted unchanged would not)
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("What inference costs on").first.wait_for(state="hidden", timeout=60_000)
        page.get_by_text("What inference costs on").first.wait_for(timeout=300_000)
