"""Helpers for the browser tests: headless Chromium with every request off this machine refused."""
import shutil
from urllib.parse import urlparse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFLINE_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def offline_page(browser, blocked: list, **options):
    """A page whose requests off this machine are refused and recorded in `blocked`."""
    page = browser.new_page(**options)

    def only_local(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    return page
