"""The RAPIDS dashboard as a user sees it under `marimo run`, in headless Chromium."""

import re

import pytest

from tests.browser_util import browser_available, chromium, marimo_server, screenshot_all, server_paths_shown

pytestmark = pytest.mark.skipif(not browser_available(), reason="needs playwright and Debian's chromium")


def open_app(browser, url, small: bool = True):
    """A viewer's page; `small` moves the Rows slider to its first step (1K rows) so runs stay short on CI."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_text("Choose what to run").first.wait_for(timeout=60_000)
    if small:
        slider = page.get_by_role("slider").first
        slider.focus()
        slider.press("Home")
        page.get_by_text("1K rows").first.wait_for(timeout=30_000)
    return page


# Ancestors of a table that scroll it sideways (through marimo's shadow roots): a column cut at the page's width.
SIDEWAYS_SCROLL = """t => { const cut = []; let e = t;
  while (e) { if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible') cut.push(e.tagName);
    e = e.parentElement || e.getRootNode().host || null; }
  return cut; }"""


def test_run_button_gives_results_with_checks_and_charts(tmp_path):
    # A temp folder of its own: the data-cache line starts empty and must count what this run writes.
    with (
        marimo_server("rapids_benchmark_dashboard.py", env={"TMPDIR": str(tmp_path)}) as url,
        chromium() as browser,
    ):
        page = open_app(browser, url)
        page.get_by_text("none there yet").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Run benchmark").click()
        page.get_by_text("Finished in").first.wait_for(timeout=120_000)
        page.get_by_text("pandas median").first.wait_for(timeout=30_000)
        # The line re-reads the folder after the run (it once said "1 MB now" with 72 MB on disk).
        page.get_by_text(re.compile(r"\(not timed\): [\d.,]+ kB there now")).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        screenshot_all(page, "rapids_run", parts=5)
        # At 1280 px a CPU run's two result tables fit: no column cut between frozen ones ("Pol…").
        tables = page.locator("table").filter(has=page.get_by_role("columnheader", name="operation"))
        assert tables.count() == 2
        for i in range(tables.count()):
            assert tables.nth(i).evaluate(SIDEWAYS_SCROLL) == []
        # The label stays inside its button (it wrapped onto a second line outside a one-line button).
        delete = page.get_by_role("button", name="Delete the cached data files")
        assert delete.evaluate("b => b.scrollHeight - b.clientHeight") <= 2
        page.get_by_text("DuckDB vs pandas").first.wait_for(
            state="attached", timeout=60_000
        )  # every engine that ran, DuckDB too
        assert page.get_by_text("Running pandas only").count() == 1  # no GPU on CI: said plainly
        assert (
            page.get_by_text("Every result matches pandas").count() == 1
        )  # Polars' results, checked in the app
        assert page.get_by_text("DISAGREE").count() == 0
        page.get_by_text("Time per operation").first.wait_for(state="attached", timeout=60_000)
        page.locator(".vega-embed").first.wait_for(state="attached", timeout=60_000)


def test_two_viewers_queue_for_the_gpu_and_both_get_results():
    import threading

    from gpu_notebooks.gpu.lock import gpu_lock_path, gpu_turn

    with marimo_server("rapids_benchmark_dashboard.py") as url, chromium() as browser:
        pages = [open_app(browser, url), open_app(browser, url)]
        release, held = threading.Event(), threading.Event()

        def hold_the_gpu():  # stands in for a third viewer (or the other app) already using the card
            with gpu_turn(path=gpu_lock_path()):
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold_the_gpu)
        holder.start()
        held.wait(10)
        try:
            for page in pages:
                page.get_by_role("button", name="Run benchmark").click()
            for page in pages:
                # No GPU here: the box says what it waits for, never "waiting for the GPU".
                page.get_by_text("Waiting for the other run to finish").first.wait_for(timeout=60_000)
                assert page.get_by_text("Waiting for the GPU").count() == 0
            screenshot_all(pages[1], "rapids_waiting", parts=2)
            pages[0].wait_for_timeout(1500)
        finally:
            release.set()
            holder.join(10)
        for page in pages:
            page.get_by_text("Finished in").first.wait_for(timeout=180_000)
            # The waiting box is gone once the run has its turn, and the page says how long it waited.
            assert page.get_by_text("Waiting for the other run").count() == 0
            page.get_by_text(re.compile(r"Waited \d+\.\d s for its turn")).first.wait_for(
                state="attached", timeout=60_000
            )


def test_a_viewer_closing_the_tab_mid_run_leaves_the_gpu_free_for_the_next():
    with marimo_server("rapids_benchmark_dashboard.py") as url, chromium() as browser:
        first = open_app(browser, url)
        first.get_by_role("button", name="Run benchmark").click()
        first.wait_for_timeout(500)
        first.close()  # the run may go on on the server; its lock must still be released
        second = open_app(browser, url)
        second.get_by_role("button", name="Run benchmark").click()
        second.get_by_text("Finished in").first.wait_for(timeout=120_000)


def test_a_run_whose_tab_closes_stops_at_the_next_operation_and_frees_the_gpu(tmp_path):
    """A closed tab's run went on for minutes at full CPU, holding the lock other viewers queue on.

    `--session-ttl 1`: marimo closes a tab's session 1 s after it goes (120 s by default). A 1K → 1M sweep,
    closed while it runs at 10K rows, must give the lease back without reaching 1M rows (whose data files
    it would write first).
    """
    import time

    from gpu_notebooks.gpu.lock import GpuLease, gpu_lock_path

    with (
        marimo_server(
            "rapids_benchmark_dashboard.py", "--session-ttl", "1", env={"TMPDIR": str(tmp_path)}
        ) as url,
        chromium() as browser,
    ):
        page = open_app(browser, url)
        slider = page.get_by_role("slider").first
        for _ in range(3):  # 1K → 10K → 100K → 1M
            slider.press("ArrowRight")
        page.get_by_text("1M rows").first.wait_for(timeout=30_000)
        page.get_by_role("radio", name=re.compile("Size sweep")).check()
        page.get_by_role("button", name="Run benchmark").click()
        page.get_by_text(re.compile(r"· 10K rows")).first.wait_for(timeout=120_000)
        page.close()
        lease, deadline = GpuLease(gpu_lock_path()), time.monotonic() + 120
        while not lease.acquire(wait=False):
            assert time.monotonic() < deadline, "the closed tab's run still holds the GPU lease"
            time.sleep(0.5)
        lease.release()
        cached = sorted(p.name for p in (tmp_path / "rapids-benchmark-data-cache").glob("data_*"))
        assert cached and not [name for name in cached if name.startswith("data_1000000_")], cached


def test_several_tabs_opened_at_once_on_a_fresh_server_all_come_up_whole():
    """`marimo run` viewers are threads of one process: sessions starting together must each get the app."""
    with marimo_server("rapids_benchmark_dashboard.py") as url, chromium() as browser:
        pages = [browser.new_page(viewport={"width": 1280, "height": 1000}) for _ in range(3)]
        for page in pages:  # Playwright's sync pages belong to this thread: start the loads back to back
            page.goto(url, wait_until="commit")
        for page in pages:
            page.get_by_role("button", name="Run benchmark").wait_for(timeout=120_000)
            page.get_by_text("Operations").first.wait_for(state="attached", timeout=60_000)


@pytest.mark.slow
def test_the_largest_size_on_this_cpu_machine_is_capped_and_completes_without_killing_the_server():
    """500M rows asked on a CPU machine: the cap holds for pandas and Polars, the run ends, the server lives."""
    with marimo_server("rapids_benchmark_dashboard.py") as url, chromium() as browser:
        page = open_app(browser, url, small=False)
        slider = page.get_by_role("slider").first
        slider.focus()
        slider.press("End")
        page.get_by_text("500M rows").first.wait_for(timeout=30_000)
        page.get_by_text("Size capped to").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Run benchmark").click()
        page.get_by_text("Finished in").first.wait_for(timeout=1_500_000)
        screenshot_all(page, "rapids_capped_largest", parts=3)
        assert page.get_by_text("kernel not found").count() == 0
        assert page.get_by_text("Every result matches pandas").count() == 1
        assert page.get_by_text("skipped").count() == 0 and page.get_by_text("Stopped before").count() == 0


def test_a_marimo_run_viewer_cannot_execute_a_snippet():
    """Read-only viewers get no code box and no button: the page says why (and how an owner turns it on)."""
    with marimo_server("rapids_benchmark_dashboard.py") as url, chromium() as browser:
        page = open_app(browser, url)
        page.get_by_text("The snippet box is off").first.wait_for(timeout=60_000)
        assert page.locator(".cm-editor").count() == 0  # no code editor anywhere on the page
        assert page.get_by_role("button", name="Run my code with pandas and cudf.pandas").count() == 0
        page.get_by_text("--allow-user-code").first.wait_for(state="attached", timeout=60_000)


def test_an_owner_who_allows_user_code_gets_the_box_and_a_result():
    with (
        marimo_server("rapids_benchmark_dashboard.py", "--", "--allow-user-code") as url,
        chromium() as browser,
    ):
        page = open_app(browser, url)
        page.get_by_text("started with").first.wait_for(timeout=60_000)
        # The editor is drawn by a component loaded after the text beside it: on a busy machine it comes later.
        page.locator(".cm-editor").first.wait_for(timeout=60_000)
        assert page.locator(".cm-editor").count() == 1
        page.get_by_role("button", name="Run my code with pandas and cudf.pandas").click()
        page.get_by_text("result rows").first.wait_for(timeout=240_000)
        screenshot_all(page, "rapids_snippet", parts=2)
        assert page.get_by_text("not run — no cuDF").count() == 1


def test_a_viewer_uploads_a_table_picks_columns_runs_and_sees_every_check_pass(tmp_path):
    """Issue 26 under `marimo run`: a bad file gets its message, a good one runs ✓; another viewer never sees it,
    and the file is gone from the server once its session ends."""
    import time

    lines = [f"store {i % 37},{(i * 7919) % 1000 - 300}.5,{i % 11}" for i in range(5_000)]
    good = tmp_path / "sales.csv"
    good.write_text("store,amount,units\n" + "\n".join(lines) + "\n")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("city,amount\nZürich,1\n".encode("latin-1"))
    server_tmp = tmp_path / "server-tmp"  # the server's temp folder: where session folders are made
    server_tmp.mkdir()
    with (
        marimo_server(
            "rapids_benchmark_dashboard.py", "--session-ttl", "1", env={"TMPDIR": str(server_tmp)}
        ) as url,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.get_by_text("No table yet").first.wait_for(timeout=60_000)
        upload = page.locator("input[type=file]").first
        upload.set_input_files(str(bad))
        page.get_by_text("This file cannot be used").first.wait_for(timeout=60_000)
        page.get_by_text("not UTF-8").first.wait_for(state="attached", timeout=60_000)
        upload.set_input_files(str(good))
        page.get_by_text("37 distinct values").first.wait_for(timeout=60_000)
        assert page.get_by_text("This file cannot be used").count() == 0
        page.get_by_role("combobox", name="Sort by").select_option(label="units (integer)")
        page.get_by_text("sort every row by").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Run on my table").click()
        page.get_by_text("measurements of your table").first.wait_for(timeout=180_000)
        page.get_by_text("Your table at 5K rows").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        page.get_by_text("Your own table").first.scroll_into_view_if_needed()
        screenshot_all(page, "rapids_user_data", parts=4)
        assert page.get_by_text("Every result matches pandas").count() == 1  # only this section ran
        assert server_paths_shown(page) == []  # the upload's server folder is never named
        assert page.get_by_text("DISAGREE").count() == 0
        folders = [f for f in server_tmp.iterdir() if f.name.startswith("rapids-user-data-")]
        mine = [f for f in folders if (f / "upload.csv").exists()]
        assert len(mine) == 1
        other = browser.new_page(viewport={"width": 1280, "height": 1000})
        other.goto(url)
        other.get_by_text("No table yet").first.wait_for(timeout=60_000)
        assert other.get_by_text("sales.csv").count() == 0
        theirs = [f for f in server_tmp.iterdir() if f.name.startswith("rapids-user-data-") and f not in mine]
        assert theirs and all(not any(f.iterdir()) for f in theirs)  # the other viewer's folder: empty
        page.close()  # the session ends after the 1 s TTL: its folder and file go with it
        deadline = time.time() + 60
        while mine[0].exists() and time.time() < deadline:
            time.sleep(0.5)
        assert not mine[0].exists()
        assert other.get_by_text("No table yet").count() == 1


def test_a_fresh_open_in_marimo_edit_has_no_stale_cell():
    """`marimo edit` opened the app with 2 cells stale (the intro and "Read the code") and no edit made."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.browser_util import ROOT, free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "marimo", "-q", "edit", "rapids_benchmark_dashboard.py"]
        + ["--headless", "--no-token", "-p", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            # The project's pyproject.toml runs every cell on open (auto_instantiate): wait for the last ones.
            page.get_by_text("Takeaways").first.wait_for(timeout=120_000)
            page.get_by_text("Choose what to run").first.wait_for(timeout=120_000)
            page.wait_for_timeout(3000)
            # The editor's "Run all stale cells" button turns yellow when any cell is stale (edited or never run).
            assert page.locator(".mo-button.yellow[data-testid=run-button]").count() == 0
    finally:
        server.terminate()
        server.wait(10)
