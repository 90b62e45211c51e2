"""A new user's walk through the app in a real browser, on the demo world.

Starts ``python app.py`` on a free local port and drives Debian's chromium (headless) with
playwright: load the demo preset, see an unreachable source fail with a message, pick a culture
task, train while the curves grow (past 30 steps, then Stop; for the README's screenshots, the
page's own settings to the end), open feature cards, compare steered and unsteered answers, sweep
the multiplier on Evaluate, compare the four methods and check capability, export and download the
vector, and load the file back. Two more walks train with the defaults the page fills in: a
behaviour task (power-seeking, swept on its A/B split) and a culture's open answers (nepal, swept
for the culture its answers show, generation accuracy and fluency on its held-out split). One screenshot per page goes to
``$YAPO_SCREENSHOTS`` when set (e.g. ``assets/screenshots``), else to the test's tmp folder.

The app uses the ``mini`` demo world unless ``YAPO_DEMO_SIZE`` says otherwise (``full`` gives
the README's screenshots); it is built on first use into the usual demo cache (its own folder,
never the full world's), or under ``$YAPO_CACHE_DIR`` when set. On a failure the page is saved
as ``failure.png`` beside the screenshots.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from yapo_core import demo

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# The run is watched until its curves have at least this many points, then stopped: on the full
# world that is the demo's step count, so the pages after it show a trained vector.
STEPS = demo.TRAINING["max_steps"] if os.environ.get("YAPO_DEMO_SIZE") == "full" else 30
# The README's screenshots (the full world, saved to $YAPO_SCREENSHOTS) show a culture run with the
# settings the page fills in, trained to its end; otherwise the walk starts a long run and stops it.
README_SHOTS = os.environ.get("YAPO_DEMO_SIZE") == "full" and bool(os.environ.get("YAPO_SCREENSHOTS"))
# A first Load builds the world: seconds for the mini one, 380 to 1,250 s for the full one on 2 cores.
LOAD_MS = 1_500_000 if os.environ.get("YAPO_DEMO_SIZE") == "full" else 300_000

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)"),
    # the full world's walk may build the world (LOAD_MS) and train to the end: more than the suite's timeout
    pytest.mark.timeout(5400 if os.environ.get("YAPO_DEMO_SIZE") == "full" else 1800),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The walk runs once with training in a background thread (local use) and once in one-second
# chunks, each a separate call that continues from the last one's state (as on a ZeroGPU Space).
TRAINING_MODES = ["thread"] + ([] if os.environ.get("YAPO_SCREENSHOTS") else ["chunks"])


@pytest.fixture(scope="module", params=TRAINING_MODES)
def app_url(request, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "YAPO_HOST": "127.0.0.1", "YAPO_PORT": str(port),
           "YAPO_DEMO_SIZE": os.environ.get("YAPO_DEMO_SIZE", "mini"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("GRADIO_SERVER_NAME", None)
    env.pop("YAPO_TRAIN_CHUNK_SECONDS", None)
    if request.param == "chunks":
        env["YAPO_TRAIN_CHUNK_SECONDS"] = "1"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with code {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the app did not answer within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app_url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("YAPO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def curve_points(page) -> int:
    """Points in the first trace of the training-curve figure (-1 before it is drawn)."""
    return page.evaluate(
        "() => { const g = document.querySelector('#train-curves .js-plotly-plot');"
        " return g && g.data && g.data.length ? g.data[0].x.length : -1 }"
    )


def pick(page, dropdown_id: str, option: str | None = None) -> None:
    """Open a Gradio dropdown and click an option (the first one when not named)."""
    page.locator(f"#{dropdown_id} input").click()
    (page.get_by_role("option", name=option, exact=True) if option else page.get_by_role("option").first).click()


def succeed(page, selector: str, text: str, timeout: float = 60_000) -> None:
    """Wait until ``selector`` shows ``text``; fail at once with the app's message if an error
    toast appears instead."""
    done = page.locator(selector).filter(has_text=text)
    toast = page.get_by_test_id("toast-text")
    done.or_(toast).first.wait_for(timeout=timeout)
    if not done.count():
        pytest.fail(f"the app said: {toast.first.inner_text()}")


def generate(page) -> None:
    """Click Compare's Generate and wait until its streamed answers are complete: the button is
    off while they stream and on again when the call ends. The mutation records are read in order
    (each with the attribute's old value), so an off and an on delivered in one batch still count."""
    page.evaluate(
        "() => { window.__generated = false; const b = document.querySelector('#generate'); let off = false;"
        " new MutationObserver((records, o) => { for (const r of records) {"
        " if (r.oldValue === null) off = true;"
        " else if (off && !b.disabled) { window.__generated = true; o.disconnect(); return } } })"
        ".observe(b, {attributes: true, attributeFilter: ['disabled'], attributeOldValue: true}) }")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function("() => window.__generated")


def train_to_end(page) -> None:
    """Click Start and wait until the new run has finished: one more run says "finished" than
    before (an earlier run may say it already), and none is preparing or running."""
    before = page.locator("#run-status").inner_text().count("finished")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("(n) => { const s = document.querySelector('#run-status').innerText;"
                           " return (s.match(/finished/g) || []).length > n && !/running|preparing/.test(s) }",
                           arg=before, timeout=1_200_000)


def looping(reply: str) -> bool:
    """A reply that does not read like text: empty, or one word (or run of characters) making up
    30 % of it or more: ",,,,,,", "with with with"."""
    words = reply.split()
    return not words or Counter(words).most_common(1)[0][1] / len(words) >= 0.3 or len(set(reply.strip())) <= 2


def test_new_user_walk(page, shots, tmp_path):
    try:
        walk(page, shots, tmp_path)
    except BaseException:
        page.screenshot(path=str(shots / "failure.png"), full_page=True)
        raise


def walk(page, shots: Path, tmp_path: Path) -> None:
    from yapo_core.export import load_vector

    # Setup: the demo preset is the default; loading it builds the world on first use.
    page.get_by_role("button", name="Load model").click()
    succeed(page, "#model-status", "✓ Loaded", timeout=LOAD_MS)
    assert "block" in page.locator("#model-status").inner_text()

    # An unreachable source answers with a message within seconds, not a hang or a traceback.
    page.get_by_role("radio", name="Behaviour: BiPO data (GitHub)").click()
    started = time.time()
    page.get_by_role("button", name="Load task").click()
    page.get_by_text("cannot be reached").first.wait_for(timeout=30_000)
    assert time.time() - started < 30
    assert "Traceback" not in page.content()
    # no "Error" badge over the outputs; the status says the task was not loaded
    assert page.locator("#task-status .error").count() == 0
    page.locator("#task-status").filter(has_text="This task was not loaded").wait_for(timeout=10_000)
    assert "no task is loaded" in page.locator("#task-status").inner_text()  # (none was, before this one)
    close_toasts(page)  # errors stay until closed

    # A culture task of the demo world.
    page.get_by_role("radio", name="Demo world").click()
    pick(page, "demo-task", "culture · morocco")
    page.get_by_role("button", name="Load task").click()
    succeed(page, "#task-status", "✓ Task loaded")
    assert "morocco" in page.locator("#task-status").inner_text()
    page.screenshot(path=str(shots / "setup.png"), full_page=True)
    # a baseline chosen for it: the page says that CAA hardly steers the demo world, and YaPO has no such note
    page.get_by_role("radio", name="CAA (dense, computed)").click()
    page.locator("#method-info").filter(has_text="CAA and SAS hardly steer the demo world").wait_for()
    page.get_by_role("radio", name="YaPO (sparse)").click()
    page.locator("#method-info").filter(has_text="trained with the preference objective").wait_for()
    assert "hardly steer" not in page.locator("#method-info").inner_text()

    # Train: start a long YaPO run, watch the curves grow past 30 steps while it is live, stop it.
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-summary").filter(has_text="Demo world").wait_for()
    # The demo preset's own hyper-parameters are filled in (yapo_core.demo.TRAINING).
    assert float(page.get_by_label("Learning rate", exact=True).input_value()) == demo.TRAINING["lr"]
    if README_SHOTS:
        # the README's screenshots show what a user gets: a run with the settings the page fills in, to its end
        train_to_end(page)
        status = page.locator("#run-status").inner_text()
        steps = int(re.search(r"step (\d+)/", status).group(1))
        assert steps == demo.TRAINING["max_steps"]
    else:
        page.get_by_label("Epochs", exact=True).fill("100000")
        page.get_by_label("Warm-up steps", exact=True).fill("5")
        page.get_by_label("Max steps (0: all epochs)", exact=True).fill("0")
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("() => { const g = document.querySelector('#train-curves .js-plotly-plot');"
                               " return g && g.data.length && g.data[0].x.length > 0 }", timeout=240_000)
        first = curve_points(page)
        page.wait_for_function("([n, steps]) => { const x = document.querySelector('#train-curves .js-plotly-plot')"
                               ".data[0].x; return x.length > n && x[x.length - 1] >= steps }", arg=[first, STEPS],
                               timeout=900_000)
        assert "running" in page.locator("#run-status").inner_text()
        page.get_by_role("button", name="Stop").click()
        page.locator("#run-status").filter(has_text="stopped").wait_for()
        status = page.locator("#run-status").inner_text()
        steps = int(re.search(r"step (\d+)/", status).group(1))
    # the curves end at the last step (runs longer than 1,500 steps are drawn thinned: yapo_core.plots.thin)
    page.wait_for_function("(n) => { const x = document.querySelector('#train-curves .js-plotly-plot').data[0].x;"
                           " return x[x.length - 1] === n }", arg=steps)
    assert steps >= STEPS and "loss" in status
    page.screenshot(path=str(shots / "train.png"), full_page=True)

    # A reload (as Gradio's own after a dropped connection) comes back to the session: model, task and run.
    page.reload()
    succeed(page, "#model-status", "✓ Loaded")
    assert "morocco" in page.locator("#task-status").inner_text()
    # the task's fields as it was loaded, so that Load task loads it again, not the list's first task
    page.wait_for_function("() => document.querySelector('#demo-task input').value.includes('morocco')")
    page.get_by_role("tab", name="Train").click()
    page.locator("#run-status").filter(has_text=f"step {steps}/").wait_for()
    # the preset's own hyper-parameters again, not the generic ones a new page starts with
    lr = page.get_by_label("Learning rate", exact=True)
    for _ in range(100):  # the tab's opening fills them in
        if float(lr.input_value()) == demo.TRAINING["lr"]:
            break
        page.wait_for_timeout(100)
    assert float(lr.input_value()) == demo.TRAINING["lr"]
    # Remove with nothing chosen says what to choose (it did nothing, silently)
    page.get_by_text("Remove a run or a loaded vector file").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    page.get_by_test_id("toast-text").filter(has_text="choose the run or vector file to remove").wait_for()
    close_toasts(page)
    # with the run chosen, a first click asks again instead of removing it
    pick(page, "remove-vector")
    page.locator("#remove").click()
    page.locator("#remove").filter(has_text="Click again to remove").wait_for()
    page.locator("#run-status").filter(has_text=f"step {steps}/").wait_for()  # the run is still there

    # Features: the new vector is preselected; its cards appear.
    page.get_by_role("tab", name="Features").click()
    page.wait_for_function("() => document.querySelector('#features-vector input').value.includes('YaPO')")
    page.get_by_role("button", name="Show features").click()
    page.locator(".latent-card").first.wait_for()
    assert page.locator(".latent-card").count() >= 1
    assert "logit lens" in page.locator("#vector-card").inner_text().lower()
    assert page.locator(".latent-card .lens .tok").count() > 0
    page.screenshot(path=str(shots / "features.png"), full_page=True)

    # Compare: a test prompt, steered and unsteered side by side.
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function("() => document.querySelector('#compare-vector input').value.includes('YaPO')")
    note = page.locator("#where-steering").inner_text()
    assert "every prompt token" in note and "every generated token" in note
    pick(page, "test-prompt")
    page.wait_for_function("() => document.querySelector('#compare-prompt textarea').value.length > 0")
    page.locator("#expected-answer").filter(has_text="chosen answer (the vector's target)").wait_for()
    generate(page)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
    # The option beside the method: steer the prompt tokens only; the page says so.
    page.get_by_role("radio", name="prompt tokens only").click()
    page.locator("#where-steering").filter(has_text="prompt tokens only").wait_for()
    generate(page)
    page.wait_for_timeout(1000)
    assert page.get_by_test_id("toast-text").count() == 0 and "Traceback" not in page.content()
    assert page.locator("#steered textarea").input_value()

    # Evaluate: MCQ accuracy of the vector against the multiplier.
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-vectors").filter(has_text="YaPO").wait_for()
    page.get_by_role("radio", name="MCQ accuracy (answer-letter likelihood)").click()
    page.get_by_role("button", name="Sweep").click()
    page.wait_for_function("() => { const g = document.querySelector('#eval-plot .js-plotly-plot');"
                           " return g && g.data.length && g.data[0].x.length === 7 }", timeout=120_000)
    # beside the curve, a dashed line at the accuracy of answering one letter everywhere
    assert page.evaluate("() => document.querySelector('#eval-plot .js-plotly-plot').layout.annotations"
                         ".some(a => a.text.startsWith('one letter everywhere ('))")
    page.screenshot(path=str(shots / "evaluate.png"), full_page=True)
    # ... and the four methods compared on the task, each at the multiplier chosen on validation
    page.get_by_text("Compare methods: YaPO, BiPO, CAA and SAS on the loaded task").click()
    page.get_by_label("Training steps (0: the preset's)").fill("3")
    page.get_by_role("button", name="Compare methods", exact=True).click()
    # its stage is shown while it works (a progress bar with text; no bar showed a bare spinner)
    page.get_by_text(re.compile(r"(yapo|bipo|caa|sas): (building the vector|sweeping multipliers)")).first.wait_for(
        state="visible", timeout=120_000)
    # on the full-size world (YAPO_DEMO_SIZE=full) the four sweeps and capability checks take about
    # five minutes on two shared cores
    # (a case-sensitive match: the progress text above the table says "sas: sweeping multipliers")
    page.locator("#cmp-table").filter(has_text=re.compile(r"\bSAS\b")).wait_for(timeout=600_000)
    page.wait_for_function("() => { const g = document.querySelector('#cmp-plot .js-plotly-plot');"
                           " return g && g.data.some(t => t.name.includes('chosen m')) }", timeout=60_000)
    assert page.get_by_test_id("toast-text").count() == 0 and "multiplier (validation)" in page.content()
    # under the table, the page says that the baselines hardly steer the demo world
    assert "CAA and SAS hardly steer the demo world" in page.locator("#cmp-note").inner_text()
    # ... and the capability check: every general question of the world, without and with the vector
    page.get_by_text("Capability check: general questions with and without the vector").click()
    page.get_by_role("button", name="Check", exact=True).click()
    succeed(page, "#capability", "demo general questions (", timeout=120_000)
    table = page.locator("#capability").inner_text()
    asked = int(re.search(r"demo general questions \((\d+)\)", table).group(1))
    world = demo.load_demo_world(size=os.environ.get("YAPO_DEMO_SIZE", "mini"))  # the app built it on Load
    assert asked == len(world.general_questions()[0])
    assert re.search(r"\bunsteered\b", table) and re.search(r"(?<!un)steered\b", table) and "change" in table

    # Export: download the .safetensors file and check it; load it back.
    page.get_by_role("tab", name="Export").click()
    page.wait_for_function("() => document.querySelector('#export-vector input').value.includes('YaPO')")
    page.get_by_role("button", name="Export", exact=True).click()
    page.locator("#download-safetensors").wait_for(state="visible")
    assert "GGUF" in page.locator("#export-note").inner_text()
    with page.expect_download() as download:
        page.locator("#download-safetensors").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    vector = load_vector(saved)
    assert vector.kind == "sparse" and vector.method == "yapo" and vector.metadata["steps"] == str(steps)
    page.locator("#vector-upload input[type=file]").set_input_files(str(saved))
    succeed(page, "#load-note", "✓ Loaded")
    page.screenshot(path=str(shots / "export.png"), full_page=True)
    page.wait_for_function("() => document.querySelector('#export-vector input').value.startsWith('file · ')")
    # a file that is not a vector: the note says so instead of keeping the earlier file's "✓ Loaded"
    import torch
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.ones(3)}, str(foreign))
    # the box empties once its file is loaded: the note speaks of the last file loaded
    page.wait_for_function(f"() => !document.querySelector('#vector-upload').innerText.includes({saved.name!r})")
    page.locator("#vector-upload input[type=file]").set_input_files(str(foreign))
    page.locator("#load-note").filter(has_text="This file was not loaded").wait_for(timeout=30_000)
    assert "not a YaPO Studio steering vector" in page.get_by_test_id("toast-text").first.inner_text()
    close_toasts(page)
    # Compare, shown before with the run, now opens on the vector loaded since.
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function("() => document.querySelector('#compare-vector input').value.startsWith('file · ')")


def test_behaviour_task_walk(page, shots, request):
    """A behaviour task with the defaults the app fills in: train to the end, compare, and sweep the
    behaviour rate, which the Evaluate page offers on the A/B split (``test_infer``). Once, with
    training in a background thread: the chunked mode adds nothing to this walk."""
    walk_once(request, behaviour_walk, page, shots, "failure-behaviour.png")


def walk_once(request, walk_, page, shots: Path, failure: str) -> None:
    """Run ``walk_(page, shots)`` in the thread mode only (the chunked mode adds nothing to it),
    saving the page as ``failure`` when it fails."""
    if request.node.callspec.params["app_url"] != "thread":
        pytest.skip(f"{walk_.__name__} runs once, in the thread mode")
    try:
        walk_(page, shots)
    except BaseException:
        page.screenshot(path=str(shots / failure), full_page=True)
        raise


def close_toasts(page) -> None:
    """Close every message the page shows (errors stay until closed) and wait until each is gone,
    so that the next step's check does not read one while it fades out. A message that closes
    itself meanwhile (an info toast's timer) counts as closed."""
    from playwright.sync_api import Error as PlaywrightError  # a timeout is one too

    for _ in range(20):  # more would be a page that keeps opening messages
        close = page.get_by_test_id("toast-close")
        if not close.count():
            return
        try:
            handle = close.first.element_handle(timeout=2_000)
            close.first.click(timeout=2_000)
        except PlaywrightError:  # the message closed itself between the count and the click
            continue
        page.wait_for_function("el => !el.isConnected", arg=handle, timeout=10_000)
    pytest.fail("messages kept opening on the page: " + "; ".join(page.get_by_test_id("toast-text").all_inner_texts()))


def pick_demo_task(page, task: str) -> None:
    """On Setup, with the demo preset loaded (loading it when it is not), pick the demo world's ``task``.
    An earlier walk's messages are closed first (errors stay until closed)."""
    close_toasts(page)
    page.get_by_role("tab", name="Setup").click()
    if "✓ Loaded" not in page.locator("#model-status").inner_text():
        page.get_by_role("button", name="Load model").click()
        succeed(page, "#model-status", "✓ Loaded", timeout=LOAD_MS)
    page.get_by_role("radio", name="Demo world").click()
    pick(page, "demo-task", task)


def train_with_open_defaults(page, name: str, kind: str) -> int:
    """On Train, for the loaded open-answer task ``name`` of this ``kind`` (``culture``, ``behaviour``):
    the page fills in the preset's open-answer settings for that kind; train with them, untouched, to
    the end. The run's step count."""
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-summary").filter(has_text=name).wait_for()
    settings = demo.open_training("sparse", kind)
    assert float(page.get_by_label("Learning rate", exact=True).input_value()) == settings["lr"]
    max_steps = int(page.get_by_label("Max steps (0: all epochs)", exact=True).input_value())
    assert max_steps == settings["max_steps"]
    train_to_end(page)
    assert f"step {max_steps}/" in page.locator("#run-status").inner_text().split(name)[-1]
    return max_steps


def compare_every_token(page, name: str) -> tuple[str, str]:
    """On Compare, the vector of ``name`` at the method's m = 1, every token steered, on the first
    held-out prompt: the unsteered and steered answers. The steered one reads like text, or the
    page says that it does not (the mini world's model is too small to write text unsteered; on the
    full world it does)."""
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function("(v) => document.querySelector('#compare-vector input').value.includes(v)", arg=name)
    page.get_by_role("radio", name="every token (the method)").click()  # an earlier walk may leave prompt tokens only
    page.locator("#where-steering").filter(has_text="every generated token").wait_for()
    pick(page, "test-prompt")
    page.wait_for_function("() => document.querySelector('#compare-prompt textarea').value.length > 0")
    generate(page)
    plain, steered = (page.locator(f"#{s} textarea").input_value() for s in ("unsteered", "steered"))
    note = page.locator("#fluency-note").inner_text()
    if not looping(plain):
        assert not looping(steered) or "does not read like text" in note, \
            f"a degenerate steered answer, and no word from the page: {steered!r}"
    assert "Against the test pair:" in note, note  # a test prompt's answers are read against its pair
    return plain, steered


def behaviour_walk(page, shots: Path) -> None:
    pick_demo_task(page, "behaviour · power-seeking")
    page.get_by_role("radio", name="open-ended").wait_for(state="hidden")  # a culture task's choices, not a behaviour's
    page.get_by_role("button", name="Load task").click()
    succeed(page, "#task-status", "demo behaviour · power-seeking")  # (the culture task's status said "✓ Task loaded")
    status = page.locator("#task-status").inner_text()
    assert "✓ Task loaded" in status and "⚠" in status
    page.screenshot(path=str(shots / "setup-behaviour.png"), full_page=True)  # the page says what the demo's behaviours do and do not

    # Train with the page's defaults, untouched: the open-answer rate and the preset's step count.
    train_with_open_defaults(page, "power-seeking", "behaviour")
    page.screenshot(path=str(shots / "train-behaviour.png"), full_page=True)

    # Features opens on the new vector with none of the culture vector's cards under its name.
    page.get_by_role("tab", name="Features").click()
    page.wait_for_function("() => document.querySelector('#features-vector input').value.includes('power-seeking')")
    page.wait_for_function("() => !document.querySelector('#latent-cards').innerText.includes('latent #')"
                           " && !document.querySelector('#vector-card').innerText.trim()", timeout=30_000)

    # Compare at the method's m = 1, every token steered: the steered answer reads like text, or
    # the page says that it does not.
    compare_every_token(page, "power-seeking")
    page.screenshot(path=str(shots / "compare-behaviour.png"), full_page=True)

    # Evaluate: the behaviour rate is offered on test_infer and sweeps without an error.
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-vectors").filter(has_text="power-seeking").wait_for()
    # the culture walk's method comparison was for another task: it is gone, not shown under this one
    page.wait_for_function("() => { const t = document.querySelector('#cmp-table');"
                           " return !t || !/\\bSAS\\b/.test(t.innerText) }", timeout=30_000)
    assert "hardly steer" not in page.locator("#cmp-note").inner_text()  # and its note with it
    boxes = page.locator("#eval-vectors label")
    for i in range(boxes.count()):  # the behaviour vector alone (a culture vector may still be checked)
        if "power-seeking" not in boxes.nth(i).inner_text() and boxes.nth(i).locator("input").is_checked():
            boxes.nth(i).click()
    # (the list for both vectors may name test_infer too, as "· test / test_infer": wait for the behaviour rate)
    page.locator("#eval-metric").filter(has_text=re.compile(r"behaviour rate .* · test_infer")).wait_for()
    offered = page.locator("#eval-metric").inner_text()
    assert re.search(r"behaviour rate .* · test_infer", offered) and re.search(r"behaviour shown in open answers .* · test\b", offered)
    assert "generation accuracy" not in offered  # its answers are any sentence of the behaviour's side, not one text
    page.get_by_role("radio", name=re.compile(r"^behaviour rate .* · test_infer$")).click()
    page.get_by_role("button", name="Sweep").click()
    # the new plot: the culture walk's sweep is still drawn until this one replaces it
    page.wait_for_function("() => { const g = document.querySelector('#eval-plot .js-plotly-plot');"
                           " return g && g.data.length && g.data.every(t => t.name.includes('power-seeking'))"
                           " && g.data[0].x.length === 7 }", timeout=300_000)
    assert page.get_by_test_id("toast-text").count() == 0 and "Traceback" not in page.content()
    page.screenshot(path=str(shots / "evaluate-behaviour.png"), full_page=True)

    # A file chosen on Setup: until Load task, the status says which task is still loaded, and a
    # file that cannot be read does not leave the status reading as if it had loaded.
    page.get_by_role("tab", name="Setup").click()
    page.get_by_role("radio", name=re.compile(r"^Upload a CSV")).click()
    files = Path(tempfile.mkdtemp(prefix="yapo-walk-"))  # not the screenshots folder, which may be assets/
    tabs = files / "tabs.csv"
    tabs.write_text("prompt\tchosen\trejected\nHi?\tHello\tBye\n")
    page.locator("#task-upload input[type=file]").set_input_files(str(tabs))
    page.locator("#task-status").filter(has_text="This file cannot be read").wait_for()  # (beside the error toast)
    assert "is tab-separated" in page.get_by_test_id("toast-text").first.inner_text()
    page.locator("#task-upload").get_by_role("button", name="Clear").click()  # the box holds one file
    good = files / "pairs.csv"
    good.write_text("prompt,chosen,rejected\n" + "".join(f"Q{i}?,yes {i},no {i}\n" for i in range(10)))
    page.locator("#task-upload input[type=file]").set_input_files(str(good))
    page.locator("#task-status").filter(has_text="the task loaded is still demo behaviour · power-seeking").wait_for()


def test_culture_open_walk(page, shots, request):
    """A culture task's open-answer form with the defaults the app fills in: train to the end,
    compare at the method's m = 1 with every token steered, and sweep generation accuracy and
    fluency on the held-out split. On the full world the held-out answers show the culture and read
    like text (design target 1). Once, in the thread mode, like the behaviour walk."""
    walk_once(request, culture_open_walk, page, shots, "failure-culture-open.png")


def sweep_values(page, metric: str, vector: str) -> list[float]:
    """Sweep ``metric`` (its label's start) for the vector named ``vector`` alone at m = 0 and 1;
    the two values, from the plot."""
    boxes = page.locator("#eval-vectors label")
    for i in range(boxes.count()):
        checked = boxes.nth(i).locator("input").is_checked()
        if checked != (vector in boxes.nth(i).inner_text()):
            boxes.nth(i).click()
    page.get_by_role("radio", name=re.compile("^" + re.escape(metric))).click()
    page.get_by_label("Multipliers", exact=True).fill("0, 1")
    page.evaluate("() => { const g = document.querySelector('#eval-plot .js-plotly-plot'); if (g) g.data = [] }")
    page.get_by_role("button", name="Sweep").click()
    # The values are read as soon as this sweep's curve is drawn: a change of metric also clears the plot,
    # and that update may land after the curve.
    drawn = page.wait_for_function(
        "([v, metric]) => { const g = document.querySelector('#eval-plot .js-plotly-plot');"
        " if (!g || !g.data || g.data.length !== 1 || !g.data[0].name.includes(v) || g.data[0].x.length !== 2) return null;"
        " const t = (g.layout.yaxis || {}).title || ''; const title = typeof t === 'string' ? t : (t.text || '');"
        " return title.startsWith(metric) ? Array.from(g.data[0].y) : null }",
        arg=[vector, metric], timeout=600_000)
    assert page.get_by_test_id("toast-text").count() == 0 and "Traceback" not in page.content()
    return drawn.json_value()


def culture_open_walk(page, shots: Path) -> None:
    full = os.environ.get("YAPO_DEMO_SIZE") == "full"
    pick_demo_task(page, "culture · nepal")
    page.get_by_role("radio", name="open-ended").click()
    page.get_by_role("button", name="Load task").click()
    succeed(page, "#task-status", "nepal")
    assert "✓ Task loaded" in page.locator("#task-status").inner_text()

    # Train with the page's defaults, untouched: the open-answer settings of the preset.
    train_with_open_defaults(page, "nepal", "culture")

    # Compare at m = 1, every token steered, on a held-out prompt whose chosen answer is named.
    plain, steered = compare_every_token(page, "nepal")
    page.locator("#expected-answer").filter(has_text="chosen answer (the vector's target)").wait_for()
    if full:
        assert not looping(steered) and steered != plain, (plain, steered)
    page.screenshot(path=str(shots / "compare-culture-open.png"), full_page=True)

    # Evaluate offers the culture shown in open answers (its own metric, chosen first), generation accuracy
    # and fluency on the held-out split, not the MCQ metrics.
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-vectors").filter(has_text="nepal").wait_for()
    page.locator("#eval-metric").filter(has_text=re.compile(r"culture shown in open answers .* · test")).wait_for()
    offered = page.locator("#eval-metric").inner_text()
    assert "MCQ accuracy" not in offered and "behaviour rate" not in offered, offered
    assert re.search(r"generation accuracy .* · test", offered), offered
    assert page.get_by_role("radio", name=re.compile("^culture shown in open answers")).is_checked()
    whole = sweep_values(page, "generation accuracy", "nepal")
    fluent = sweep_values(page, "fluent answers", "nepal")
    accuracy = sweep_values(page, "culture shown in open answers", "nepal")
    page.screenshot(path=str(shots / "evaluate-culture-open.png"), full_page=True)
    print(f"nepal's open answers at m = 0, 1: culture shown {accuracy}, generation accuracy {whole}, fluent {fluent}; "
          f"first held-out question: {plain!r} -> {steered!r}")  # (shown with pytest -rP)
    assert whole[1] <= accuracy[1]  # the whole chosen answer contains its short answer
    if full:  # design target 1 on the app's own run: shows the culture on >= 70 %, fluent on >= 90 %
        assert accuracy[0] <= 0.4 and accuracy[1] >= 0.7, accuracy
        assert fluent[1] >= 0.9, fluent
