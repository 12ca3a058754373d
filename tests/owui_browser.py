"""Driving the real Open WebUI in Debian's headless Chromium (Selenium), used by the loopback browser test
(tests/router/test_open_webui_browser.py) and shareable with a lab one: the browser, the
onboarding (first account = admin), the model picker, sending a prompt and reading the answer, the ledger rows.

The page is found by the ids and labels of the pinned release (0.12.4): #chat-input, #send-message-button,
#model-selector-model-button, #model-search-input, [aria-label="Select <model> model"], #response-content-container.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import time

ADMIN = {"name": "Household Admin", "email": "admin@home.arpa", "password": "correct-horse-battery"}


def chromium(tmp: pathlib.Path, *, ca_file: str | os.PathLike | None = None, host_map: dict | None = None):
    """Debian's chromium + chromium-driver (apt), headless; Selenium's own browser download is never used.
    ca_file: a root CA the browser trusts (added to a fresh NSS database under a private HOME, with certutil from
    libnss3-tools), as a household device that installed Caddy's root would; nothing else is trusted beyond the
    system's roots and certificate errors stay fatal. host_map: {hostname: address} resolved inside the browser
    only (Chromium's --host-resolver-rules), for a site served under its own name on a published port."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise RuntimeError("chromium/chromedriver missing: run `make deps` (apt-get install chromium chromium-driver)")
    env = dict(os.environ)
    if ca_file:
        env["HOME"] = str(_nss_home(tmp / "chromium-home", pathlib.Path(ca_file)))
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860",
              "--disable-gpu", f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(a)
    if host_map:
        opts.add_argument("--host-resolver-rules=" + ", ".join(f"MAP {h} {a}" for h, a in host_map.items()))
    return webdriver.Chrome(service=Service(executable_path=driver, env=env), options=opts)


def _nss_home(home: pathlib.Path, ca_file: pathlib.Path) -> pathlib.Path:
    certutil = shutil.which("certutil")
    if not certutil:
        raise RuntimeError("certutil missing: run `make deps` (apt-get install libnss3-tools)")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    if not (db / "cert9.db").exists():
        subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-n", "homelab-test-root", "-t", "C,,", "-i", str(ca_file)],
                   check=True, capture_output=True)
    return home


def wait(driver, pred, timeout=30, what="condition"):
    """pred(driver) until truthy (its value is returned); a timeout names what was awaited and shows the page."""
    from selenium.common.exceptions import WebDriverException
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred(driver)
            if v:
                return v
        except WebDriverException:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; page text: {body_text(driver)[:800]}")


def body_text(driver) -> str:
    from selenium.common.exceptions import WebDriverException
    try:
        return driver.find_element("tag name", "body").text
    except WebDriverException:
        return ""


def css(driver, sel):
    """The first displayed element matching sel, or None."""
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        els = [e for e in driver.find_elements("css selector", sel) if e.is_displayed()]
    except StaleElementReferenceException:   # the page re-rendered under us: the caller looks again
        return None
    return els[0] if els else None


def button(driver, *labels):
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        for b in driver.find_elements("css selector", "button"):
            if b.is_displayed() and b.text.strip() in labels:
                return b
    except StaleElementReferenceException:
        return None
    return None


def create_admin(driver, base_url: str, admin: dict = ADMIN, *, existing_ok: bool = False) -> None:
    """The onboarding: the first account created is the admin; ends on the chat page. existing_ok: when the site
    already has its admin (a lab reused between runs), sign in with the same account instead."""
    start = None
    for attempt in range(3):   # on a loaded machine the app's first render can miss a load event: load it again
        driver.get(base_url + "/auth")
        try:
            start = wait(driver, lambda d: button(d, "Get started", "Get Started") or css(d, "input[type=email]"),
                         60, "the onboarding page")
            break
        except AssertionError:
            if attempt == 2:
                raise
    onboarding = start.tag_name == "button"
    if onboarding:
        start.click()
    elif not existing_ok:
        raise AssertionError(f"expected the onboarding (no account yet), got: {body_text(driver)[:400]}")
    wait(driver, lambda d: css(d, "input[type=email]"), 30, "the sign-up form")
    if onboarding:
        name = wait(driver, lambda d: css(d, "input[autocomplete=name]") or css(d, "input[name=name]"), 10, "name")
        name.send_keys(admin["name"])
    css(driver, "input[type=email]").send_keys(admin["email"])
    css(driver, "input[type=password]").send_keys(admin["password"])
    css(driver, "input[type=password]").submit()
    for attempt in range(3):   # a JS chunk that timed out on a loaded machine shows SvelteKit's "500": load again
        try:
            wait(driver, lambda d: css(d, "#chat-input"), 45, "the chat page after sign-up")
            break
        except AssertionError:
            if attempt == 2:
                raise
            driver.get(base_url + "/")
    dismiss_dialogs(driver)


def dismiss_dialogs(driver) -> None:
    from selenium.common.exceptions import WebDriverException
    for _ in range(3):   # a release-notes / welcome dialog may cover the page
        b = button(driver, "Okay, Let's Go!", "Close")
        if b:
            try:
                b.click()
            except WebDriverException:
                pass


def token(driver) -> str:
    """The signed-in user's Open WebUI session token (for its own API)."""
    return driver.execute_script("return localStorage.token")


def pick_model(driver, model: str, attempts: int = 3) -> None:
    """Open the model picker, search for model, pick it.

    On a loaded machine the search box could take the keys before it was wired up and drop them: the list stayed
    unfiltered (17 items) and the model, below the fold, never showed (seen in CI). The search text is checked and
    typed again, and the picker reopened, when that happens."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.keys import Keys
    item = f'[aria-label="Select {model} model"]'
    for attempt in range(attempts):
        try:
            wait(driver, lambda d: css(d, "#model-selector-model-button"), 30, "the model picker").click()
            search = wait(driver, lambda d: css(d, "#model-search-input"), 10, "the model search box")
            for _ in range(3):
                if (search.get_attribute("value") or "") == model:
                    break
                search.clear()
                search.send_keys(model)
                time.sleep(0.3)
            found = wait(driver, lambda d: css(d, item), 10, f"{model} in the list")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", found)
            found.click()
            wait(driver, lambda d: model == css(d, "#model-selector-model-button").text.strip(), 10, f"{model} picked")
            return
        except (AssertionError, WebDriverException):
            if attempt == attempts - 1:
                raise
            try:                        # close the menu, if open, before the next try
                driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
            except WebDriverException:
                pass


def picked_model(driver) -> str:
    return wait(driver, lambda d: css(d, "#model-selector-model-button"), 30, "the model picker").text.strip()


def send(driver, text: str, attempts: int = 3) -> None:
    """Type text and send it; done when it is in the conversation and the message box is empty again.

    On a loaded machine the box could re-render just after an answer ended (the send button is only shown once the
    last message is done), dropping the typed text, and the click on the send button then sent nothing (seen in CI:
    the test then waited for an answer to a message never sent). Such a miss is typed and sent again."""
    from selenium.common.exceptions import WebDriverException
    before = body_text(driver).count(text)

    def box_text(d) -> str:
        box = css(d, "#chat-input")
        return box.text if box is not None else ""

    for attempt in range(attempts):
        box = wait(driver, lambda d: css(d, "#chat-input"), 30, "the message box")
        try:
            if text not in box.text:
                box.click()
                box.send_keys(text)
            wait(driver, lambda d: css(d, "#send-message-button"), 10, "the send button").click()
        except WebDriverException:    # the element went stale under us: look again
            continue
        try:                          # Open WebUI shows a sent message at once; 20 s covers a loaded box
            wait(driver, lambda d: body_text(d).count(text) > before and text not in box_text(d), 20,
                 "the message in the conversation")
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
    raise AssertionError(f"could not send {text!r}; page text: {body_text(driver)[:800]}")


def assistant_text(driver) -> str:
    els = driver.find_elements("css selector", "#response-content-container")
    return els[-1].text if els else ""


# The router's ledger rows, as the tests read them from its SQLite store (router_app/access/store.py).
LEDGER_SQL = "SELECT app, route, end_user, status FROM usage ORDER BY ts"
# The router's own 503 when a route is down and nothing can take the request (its wording, shown as it is).
ROUTER_503 = re.compile(r"route '\w+' (?:is unavailable|failed \(\w+\)) and no fallback can take this request")
