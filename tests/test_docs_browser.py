"""/docs in headless Chromium with every request off this machine blocked: it must list the operations."""
import pytest

from tests.browser_helpers import CHROMIUM, OFFLINE_ARGS, offline_page
from tests.service_helpers import service


@pytest.mark.slow
def test_docs_page_works_offline_in_chromium(trained_store, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    blocked = []
    with service(trained_store) as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
            page = offline_page(browser, blocked)
            page.goto(f"{url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = {el.inner_text().strip().replace("\u200b", "") for el in page.query_selector_all(".opblock-summary-path")}
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
            browser.close()
    assert {"/generate", "/sweep", "/models", "/models/{name}", "/readyz", "/metrics"} <= paths
    assert blocked == [], f"/docs tried to reach the network: {blocked}"
