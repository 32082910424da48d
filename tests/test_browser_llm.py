"""The fine-tuning dashboard as a user sees it under `marimo run` (and, once, `marimo edit`), in headless Chromium."""

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.browser_util import (
    ROOT,
    SHOTS,
    browser_available,
    cell_text,
    chromium,
    free_port,
    marimo_server,
    screenshot_all,
    server_paths_shown,
)

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
        for step in range(1, 8):  # each step's own cell: on a busy machine a later one may still be drawing
            page.get_by_text(f"Step {step} complete").first.wait_for(state="attached", timeout=60_000)
        page.locator(".vega-embed").nth(1).wait_for(
            state="attached", timeout=60_000
        )  # loss and memory charts
        assert page.get_by_text("Step 6 complete").count() == 1
        screenshot_all(page, "llm_run", parts=6)


def test_after_train_a_live_status_beside_the_button_names_the_step_and_the_time():
    """Issue 24, item 12: the steps start ~1,000 px below Train, so the line under the button says which of the
    seven runs and for how long, then how the run ended; its link goes down to the steps."""
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_small_settings(page)
        train = page.get_by_role("button", name="Train", exact=True)
        train.click()
        status = page.get_by_text(re.compile(r"Running step \d of 7 — .* since Train")).first
        status.wait_for(timeout=120_000)
        texts = set()
        for _ in range(240):  # it changes as the steps run: another step or a later time
            texts.add(status.inner_text() if status.count() else "")
            if len(texts) > 1:
                break
            page.wait_for_timeout(500)
        assert len(texts) > 1, texts
        button_box, status_box = train.bounding_box(), status.bounding_box()
        assert 0 < status_box["y"] - button_box["y"] < 250  # right under the button, not 1,000 px below
        page.screenshot(path=str(SHOTS / "llm_status_running.png"))
        assert page.locator("#the-seven-steps").count() == 1  # where the line's link goes
        page.get_by_text("Step 7 complete").first.wait_for(timeout=600_000)
        page.get_by_text("All 7 steps done").first.wait_for(timeout=60_000)
        page.get_by_text("the steps are below").first.wait_for(state="detached", timeout=60_000)
        train.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "llm_status_done.png"))


def test_a_bad_upload_gets_a_clear_message_and_the_app_keeps_working():
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
        page.get_by_text("upload", exact=True).first.click()  # data source: upload shows the file picker
        page.get_by_text("at most 5 MB").first.wait_for(timeout=60_000)  # the limit is said before any upload
        file_input = page.locator("input[type=file]").first
        file_input.set_input_files(
            files=[{"name": "data.csv", "mimeType": "text/csv", "buffer": b"query,reply\nhi,there\n"}]
        )
        page.get_by_text("needs a prompt column").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1000)
        screenshot_all(page, "llm_bad_upload", parts=3)
        # The app names the missing columns in words (no Python list) and still renders the rest of the page.
        page.get_by_text("found: query and reply").first.wait_for(state="attached", timeout=60_000)
        assert page.get_by_text("['prompt', 'response']").count() == 0
        page.get_by_text("data: uploaded data.csv (not usable: see below)").first.wait_for(
            state="attached", timeout=60_000
        )
        page.get_by_text("Why LoRA works").first.wait_for(state="attached", timeout=60_000)


def test_the_data_choice_shows_its_own_fields_and_the_summary_names_what_trains():
    """Issue 24, item 13: a file chosen while "built-in" was selected was silently ignored; the prompt/response
    column boxes (hub only) sat beside the upload; the settings line never named the data."""
    # Alpaca's layout: one JSON array of instruction/output objects
    rows = json.dumps([{"instruction": f"Say {i}.", "output": i} for i in range(30)], indent=1)
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
        page.get_by_text("data: the built-in set (200 rows)").first.wait_for(timeout=60_000)
        assert (
            page.get_by_text("prompt column").count() == 0 and page.locator("input[type=file]").count() == 0
        )
        page.get_by_text("hub dataset", exact=True).first.click()
        page.get_by_text("prompt column").first.wait_for(
            timeout=60_000
        )  # the column boxes come with the hub id
        assert page.locator("input[type=file]").count() == 0
        page.get_by_text("upload", exact=True).first.click()
        page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
        page.get_by_text("prompt column").first.wait_for(state="detached", timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(
            files=[{"name": "mine.json", "mimeType": "application/json", "buffer": rows.encode()}]
        )
        page.get_by_text("data: uploaded mine.json (30 rows)").first.wait_for(timeout=60_000)
        page.get_by_text("Used instruction as the prompt and output as the response").first.wait_for(
            state="attached", timeout=60_000
        )
        page.get_by_text("Data: 30 rows").first.wait_for(timeout=60_000)  # the preview is the file
        page.get_by_text("built-in (200 examples)", exact=True).first.click()  # back to the built-in set
        page.get_by_text("is uploaded but not used").first.wait_for(timeout=60_000)  # said plainly
        page.get_by_text("data: the built-in set (200 rows)").first.wait_for(state="attached", timeout=60_000)
        screenshot_all(page, "llm_data_choice", parts=2)


def type_a_hub_dataset(browser, url, typed):
    """A fresh page with the data choice on "hub dataset" and `typed` entered as its id."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
    page.get_by_text("hub dataset", exact=True).first.click()
    box = page.get_by_role("textbox", name="hub dataset id")
    box.fill(typed)
    box.press("Enter")
    return page


def test_a_marimo_run_viewer_cannot_point_the_server_at_its_own_folders(tmp_path):
    """A typed dataset folder would show the server's files in the preview; a model folder would be read too."""
    secret = tmp_path / "viewer-secret"
    secret.mkdir()
    (secret / "train.jsonl").write_text(
        "\n".join(json.dumps({"instruction": f"secret {i}", "output": "x"}) for i in range(30))
    )
    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = type_a_hub_dataset(browser, url, str(secret))
        page.get_by_text("Give a hub dataset id").first.wait_for(timeout=60_000)
        page.get_by_text("Folders on the server are off").first.wait_for(state="attached", timeout=60_000)
        assert page.get_by_text("secret 3").count() == 0  # nothing of the folder is shown
        page.get_by_role("combobox", name="model source").select_option(label="local directory")
        page.get_by_text("A local model folder cannot be used here").first.wait_for(timeout=60_000)
        screenshot_all(page, "llm_server_paths_off", parts=2)
    # The owner's switch: started with `-- --allow-server-paths`, the same folder loads.
    with (
        marimo_server("llm_finetuning_dashboard.py", "--", "--allow-server-paths") as url,
        chromium() as browser,
    ):
        page = type_a_hub_dataset(browser, url, str(secret))
        page.get_by_text("secret 3").first.wait_for(state="attached", timeout=60_000)
        assert page.get_by_text("Folders on the server are off").count() == 0


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
        page.get_by_text("cannot be reached").first.wait_for(state="attached", timeout=60_000)
        page.get_by_text("Falling back to the tiny offline GPT-2").first.wait_for(
            state="attached", timeout=60_000
        )
        page.get_by_text("tiny-offline-gpt2").first.wait_for(state="attached", timeout=60_000)
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
        page.get_by_text("tiny-offline-gpt2").first.wait_for(state="attached", timeout=60_000)
        page.get_by_text("× 1 epoch =").first.wait_for(
            state="attached", timeout=60_000
        )  # step 4: steps/epoch × 1 epoch (singular)
        screenshot_all(page, "llm_on_screen_settings", parts=2)


def test_several_tabs_opened_at_once_on_a_fresh_server_all_come_up_whole():
    """Sessions are threads of one process: their first imports of torch/transformers must not race."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with marimo_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        pages = [browser.new_page(viewport={"width": 1280, "height": 1000}) for _ in range(3)]
        for page in pages:  # each goto returns once the page loads; the sessions start together
            page.goto(url, wait_until="commit")
        for index, page in enumerate(pages):
            try:
                page.get_by_role("button", name="Train", exact=True).wait_for(timeout=300_000)
            except PlaywrightTimeout:  # say what the tab shows instead (seen once in a local run, not since)
                screenshot_all(page, f"llm_three_tabs_stuck_{index}", parts=1)
                raise AssertionError(
                    f"tab {index} has no Train button: {page.inner_text('body')[-1500:]}"
                ) from None
            page.get_by_text("Why LoRA works").first.wait_for(timeout=120_000)
            assert page.locator("select").count() >= 5, f"tab {index} has no settings controls"
            assert page.get_by_text("ImportError").count() == 0
            assert page.get_by_text("partially initialized").count() == 0
        screenshot_all(pages[-1], "llm_three_tabs", parts=1)


@contextlib.contextmanager
def marimo_edit_server(app):
    """`marimo edit app --headless --no-token` on a free port (the notebook runs on open: auto_instantiate)."""
    port = free_port()
    command = [sys.executable, "-m", "marimo", "-q", "edit", app, "--headless", "--no-token", "-p", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_fresh_open_in_marimo_edit_marks_no_cell_stale():
    """Open the notebook in the editor and change nothing: once every cell has run, none carries the stale
    mark ("has not yet been run"), so the "run stale cells" button has nothing to do."""
    with marimo_edit_server("llm_finetuning_dashboard.py") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=180_000)
        busy = page.locator(
            "[data-testid=cell-status][data-status=running], [data-testid=cell-status][data-status=queued]"
        )
        deadline = time.time() + 180
        while busy.count() and time.time() < deadline:
            page.wait_for_timeout(1000)
        page.wait_for_timeout(2000)
        cells = page.locator(".marimo-cell")
        stale = [
            cells.nth(i).inner_text()[:60]
            for i in range(cells.count())
            if cells.nth(i).locator(".cell-status-stale").count()
        ]
        assert cells.count() > 20 and stale == []


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
        page.get_by_text("disable_adapter():", exact=False).first.wait_for(
            state="attached", timeout=60_000
        )  # the base pane's title
        page.get_by_text("Fine-tuned (loaded with").first.wait_for(state="attached", timeout=60_000)
        page.get_by_text("merged (merge_and_unload)").first.wait_for(
            state="attached", timeout=60_000
        )  # the cost table's second row
        page.get_by_text("On a CPU there is no card").first.wait_for(state="attached", timeout=60_000)
        assert server_paths_shown(page) == []  # no server path in what the app shows
        page.get_by_text("What inference costs on").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "llm_try_it.png"))

        # The same settings again: Generate runs again (a form re-submitted unchanged would not)
        def cost_cell_text():  # the cell that holds the cost table, table included: its timings change every run
            heading = page.get_by_text("What inference costs on")
            return cell_text(heading.first) if heading.count() else ""

        first_run = cost_cell_text()
        page.get_by_role("button", name="Generate").click()
        # Polled rather than waiting for the table to vanish: a fast re-run (on a CPU, a tiny model that stops at
        # once takes well under a second) can hide and redraw it between polls, with the same greedy text. Any
        # change of the cell (cleared, streaming, new timings in the table) means the click ran the generation.
        deadline, ran_again = time.time() + 300, False
        while time.time() < deadline and not ran_again:
            ran_again = cost_cell_text() != first_run
            page.wait_for_timeout(100)
        if not ran_again:
            page.screenshot(path=str(SHOTS / "llm_try_it_not_again.png"), full_page=True)
        assert ran_again, f"Generate did not run again; its cell reads {cost_cell_text()[:600]!r}"
        page.get_by_text("What inference costs on").first.wait_for(timeout=300_000)


def test_a_training_run_whose_tab_closes_stops_and_frees_the_gpu(tmp_path):
    """A closed tab's training went on for nobody, holding the lease every other viewer queues on.

    `--session-ttl 1`: marimo closes a tab's session 1 s after it goes. A 30-epoch run of the tiny model
    (300 steps), closed once step 5 trains, must give the lease back without reaching step 7 (which would
    save an adapter).
    """
    from gpu_notebooks.gpu.lock import GpuLease, gpu_lock_path

    adapters = tmp_path / "adapters"
    with (
        marimo_server(
            "llm_finetuning_dashboard.py",
            "--session-ttl",
            "1",
            env={"LLM_DASHBOARD_OUTPUT_DIR": str(adapters)},
        ) as url,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        choose_small_settings(page)
        page.locator("select").nth(3).select_option(label="30")
        page.get_by_text("epochs 30 ·").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Step 4 complete").first.wait_for(timeout=300_000)  # step 5 trains next
        page.close()
        lease, deadline = GpuLease(gpu_lock_path()), time.monotonic() + 300
        # Still training as the tab goes (300 steps take far longer than a close): a run that had already
        # ended or failed would leave the lease free, and the checks below would prove nothing.
        assert not lease.acquire(wait=False), "the run was not training when the tab closed"
        while not lease.acquire(wait=False):
            assert time.monotonic() < deadline, "the closed tab's training still holds the GPU lease"
            time.sleep(0.5)
        lease.release()
        assert not list(adapters.glob("*/adapter_config.json")), "step 7 ran for a closed tab"
