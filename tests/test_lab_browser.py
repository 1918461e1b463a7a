"""The researcher's loop in a real browser: JupyterLab (token required) runs a pipeline stage notebook top to bottom,
and every committed report renders at 1,280 px with nothing wider than the page.

JupyterLab serves a scratch copy of the repository's pipeline (the stage notebook, `dvc.yaml`, a small `params.yaml`
and a link to the pinned `data/`), so running the notebook writes nothing into the repository.
"""
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT
from test_dashboards import CHROMIUM, CHROMIUM_ARGS, _free_port

playwright = pytest.importorskip("playwright.sync_api")
REPORTS = sorted((ROOT / "reports").glob("*/*.html"))
SHOTS = ROOT / "artifacts" / "screenshots"  # git-ignored; kept so a person can look at what the test saw


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists(): pytest.skip("Chromium is not installed (make services installs it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def lab(tmp_path):
    "JupyterLab on loopback over a scratch pipeline folder; yields (url, token, root)."
    root = tmp_path / "repo"
    (root / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "prepare.ipynb", root / "nbs" / "pipeline")
    shutil.copy(ROOT / "dvc.yaml", root)
    (root / "data").symlink_to(ROOT / "data")
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())["prepare"]
    (root / "params.yaml").write_text(yaml.safe_dump({"prepare": {**params, "datasets": ["sp500"]}}))
    token, port = secrets.token_hex(16), _free_port()
    proc = subprocess.Popen([BIN / "jupyter", "lab", "--ip=127.0.0.1", f"--port={port}", "--no-browser", "--allow-root",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5).close()
            break
        except OSError:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}"
            time.sleep(0.5)
    else: raise AssertionError("jupyter lab did not come up")
    yield url, token, root
    proc.terminate()
    proc.wait(timeout=30)


def test_lab_refuses_without_token_and_runs_a_stage_notebook(lab, browser):
    url, token, root = lab
    with pytest.raises(urllib.error.HTTPError) as refused:  # the API answers nobody without the token
        urllib.request.urlopen(f"{url}/api/contents", timeout=10)
    assert refused.value.code == 403
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/lab/tree/nbs/pipeline/prepare.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # the kernel is connected once the status bar says so; a Run All sent before that runs nothing, so it is retried
    page.wait_for_function("() => document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=120_000)
    for _ in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            page.locator(".jp-InputArea-prompt", has_text="[1]").first.wait_for(timeout=30_000)
            break
        except playwright.TimeoutError: continue
    # the stage's last cell prints what it wrote; a failing cell would stop the run before it
    try: page.wait_for_selector("text=wrote 1 return panels", timeout=180_000)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "lab_prepare_failed.png"), full_page=True)  # what the notebook showed instead
        raise
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    assert (root / "artifacts" / "prepare" / "returns_sp500.parquet").exists()  # it ran from the root it found
    assert (root / "reports" / "prepare" / "metrics.json").exists()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "lab_prepare.png"))
    page.close()


@pytest.mark.parametrize("report", REPORTS, ids=[p.relative_to(ROOT / "reports").as_posix() for p in REPORTS])
def test_report_fits_the_page(report, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(report.as_uri())
    width = page.evaluate("document.documentElement.clientWidth")
    overflowing = page.evaluate("""(w) => [...document.querySelectorAll('table, img, svg, pre')]
        .filter(el => el.getBoundingClientRect().right > w + 1)
        .map(el => el.tagName + ' ' + Math.round(el.getBoundingClientRect().right) + 'px: ' + (el.innerText || '').slice(0, 80))""", width)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{report.stem}.png"), full_page=True)
    page.close()
    assert not overflowing, f"{report.name}: wider than the page at {width}px: {overflowing[:5]}"
