"""The dashboard and the HTML drift report, in a real browser: headless Chromium (the Debian
package, driven by Selenium through chromium-driver) against a real server with a drifting
workload. Screenshots are kept under tests/artifacts/ (not committed) for CI to keep."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import models as bench_models
from runtime.monitor import Profile
from tests.integration.serving import PYMODELS, REPO_ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "needs headless Chromium and its driver (Debian: apt install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose MLP got 3,000 rows with four of its 20 features shifted."""
    tmp = tmp_path_factory.mktemp("dashboard")
    model = bench_models.mlp(tmp / "mlp.onnx")
    X = np.random.default_rng(1).standard_normal((5000, 20)).astype(np.float32)
    Profile.fit(X, dtypes="float32").save(tmp / "ref.json")
    config = tmp / "mlrt.toml"
    config.write_text(
        f"""
[[models]]
name = "mlp"
source = "{model}"
profile = "{tmp / "ref.json"}"

[[models]]
name = "iris"
source = "{PYMODELS}:iris"

[[models]]
name = "stump"
source = "{PYMODELS}:iris_stump"

[[endpoints]]
name = "flowers"
variants = [{{ model = "iris", weight = 1 }}]
shadow = [{{ model = "stump" }}]
"""
    )
    srv = start_server([], tmp, ["--config", str(config)])
    rng = np.random.default_rng(2)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        for _ in range(60):
            x = rng.standard_normal((50, 20)).astype(np.float32)
            x[:, :4] += 0.8
            body = {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [50, 20], "data": x.ravel().tolist()}
                ]
            }
            assert http.post("/v2/models/mlp/infer", json=body).status_code == 200
        iris = {
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
        }
        assert http.post("/v2/models/iris/infer", json=iris).status_code == 200
        for _ in range(20):
            assert http.post("/v2/models/flowers/infer", json=iris).status_code == 200
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail("the page did not show it in time")


def _not_blank(path: Path) -> None:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.std() > 20, f"{path} looks blank (pixel spread {pixels.std():.1f})"


def _rows(driver: object, model: str) -> dict[str, tuple[str, str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'[data-model="{model}"] tr[data-feature]')  # type: ignore[attr-defined]
    return {
        r.get_attribute("data-feature"): (r.get_attribute("data-status"), r.get_attribute("data-psi"))
        for r in rows
    }


def _expected(report: dict) -> dict[str, tuple[str, float | None]]:
    return {f["name"]: (f["status"], f["psi"]) for f in [*report["features"], *report["outputs"]]}


def test_the_dashboard_shows_what_the_server_knows(drifting: Server, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    browser.get(f"{drifting.url}/")
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-updated"))
    # Live values: requests to iris (not monitored, so mlp's drift stays put) while the page
    # polls show up as a rate in its chart.
    stop = threading.Event()

    def traffic() -> None:
        body = {
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
        }
        with httpx.Client(base_url=drifting.url, timeout=30) as http:
            while not stop.is_set():
                http.post("/v2/models/iris/infer", json=body)
                time.sleep(0.01)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        rate = '[data-model="iris v1"] .chart .value'
        _wait(lambda: browser.find_element(By.CSS_SELECTOR, rate).text not in ("- /s", "0.0 /s"))
    finally:
        stop.set()
        sender.join()
    report = httpx.get(f"{drifting.url}/v2/models/mlp/drift", timeout=10).json()
    want = _expected(report)
    got = _wait(lambda: _rows(browser, "mlp") if len(_rows(browser, "mlp")) == len(want) else None)
    # Every feature and output listed, with the status and PSI of the JSON drift endpoint.
    assert set(got) == set(want)
    for name, (status, psi) in want.items():
        assert got[name][0] == status, name
        assert float(got[name][1]) == pytest.approx(psi, abs=1e-12), name
    assert report["status"] == "alert" and sum(s == "alert" for s, _ in want.values()) >= 4
    # Worst first: the alerts lead the table.
    statuses = [s for s, _ in got.values()]
    assert statuses[: statuses.count("alert")] == ["alert"] * statuses.count("alert")
    models = browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    assert {m.get_attribute("data-model") for m in models} == {"mlp", "iris", "stump"}
    # The endpoint: its variant with its requests, its shadow with its agreement.
    endpoint = browser.find_element(By.CSS_SELECTOR, 'table[data-endpoint="flowers"]').text
    shown = httpx.get(f"{drifting.url}/v2/endpoints/flowers", timeout=10).json()
    assert "iris" in endpoint and str(shown["variants"][0]["requests"]) in endpoint
    assert "stump" in endpoint and "shadow" in endpoint
    # The timeline: mlp's drift went from ok to alert.
    _wait(lambda: "drift ok -> alert" in browser.find_element(By.ID, "events").text, timeout=30)
    assert "alert" in browser.find_element(By.CSS_SELECTOR, '#models tr[data-model="mlp"]').text
    # The regions a person looks at are drawn, and the picture is not blank.
    for region in ("models", "charts", "drift", "events"):
        assert browser.find_element(By.ID, region).size["height"] > 0, region
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    browser.save_screenshot(str(shot))
    _not_blank(shot)
    # Sorting by name reorders the rows.
    browser.find_element(By.XPATH, '//div[@data-model="mlp"]//th[text()="feature"]').click()
    names = list(_rows(browser, "mlp"))
    assert names == sorted(names)


def test_the_html_report_opens_offline_and_says_the_same(drifting: Server, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "runtime", "drift", "--url", drifting.url, "--model", "mlp",
           "--format", "html", "-o", str(page)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO_ROOT, timeout=60)
    text = page.read_text()
    assert (
        "<script" not in text
        and "https://" not in text
        and text.count("http://") == text.count("http://www.w3.org/2000/svg")
    )  # the SVG namespace is a name, not a request
    report = httpx.get(f"{drifting.url}/v2/models/mlp/drift", timeout=10).json()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    try:
        browser.get(page.as_uri())
        rows = _rows(browser, "mlp v1")
        want = _expected(report)
        assert set(rows) == set(want)
        for name, (status, psi) in want.items():
            assert rows[name][0] == status and float(rows[name][1]) == pytest.approx(psi, abs=1e-12), name
        # Nothing was fetched: the page is all there is.
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
        shot = ARTIFACTS / "drift-report.png"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(shot))
        _not_blank(shot)
        assert (
            browser.find_element(By.CSS_SELECTOR, 'section[data-model="mlp v1"]').get_attribute("data-status")
            == "alert"
        )
    finally:
        browser.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
