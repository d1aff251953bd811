"""The reference panel's whole journey in headless Chromium (Selenium),
run by tests/panel_browser.rs against a real kauthd and panel.

Environment: PANEL_URL (ends with /), PANEL_USER and PANEL_PASSWORD (an
account with a password and no 2FA), PANEL_CONSOLE (the panel's standard
output, where reset links go), SCREENSHOTS (a directory). Codes come
from Debian's oathtool; the QR code on the enrollment page is read back
from its screenshot by zbarimg. Prints `screenshot: PATH` for each page.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["PANEL_URL"]
USER = os.environ["PANEL_USER"]
PASSWORD = os.environ["PANEL_PASSWORD"]
CONSOLE = os.environ["PANEL_CONSOLE"]
SHOTS = os.environ["SCREENSHOTS"]
NEW_PASSWORD = "Kestrel-mosaic-harbor-6604"

_shot = 0
browsers = []


def browser(label: str):
    # Beside the screenshots, in the test's temporary directory.
    scratch = os.path.dirname(os.path.abspath(SHOTS))
    profile = tempfile.mkdtemp(prefix=f"chromium-{label}-", dir=scratch)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)
    driver.label = label
    driver.downloads = tempfile.mkdtemp(prefix=f"downloads-{label}-", dir=scratch)
    driver.execute_cdp_cmd("Page.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": driver.downloads})
    browsers.append(driver)
    return driver


def shot(driver, name: str) -> str:
    global _shot
    _shot += 1
    path = os.path.join(SHOTS, f"{_shot:02d}-{driver.label}-{name}.png")
    driver.save_screenshot(path)
    print(f"screenshot: {path}", flush=True)
    return path


def wait_for(driver, css: str, seconds: float = 20):
    try:
        return WebDriverWait(driver, seconds).until(lambda d: d.find_element(By.CSS_SELECTOR, css))
    except TimeoutException:
        raise AssertionError(f"{driver.label}: no {css!r} on {driver.current_url}:\n"
                             f"{driver.find_element(By.TAG_NAME, 'body').text}") from None


def notices(driver) -> str:
    return " | ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".notice"))


def fill(driver, fields: dict, button: str):
    for name, value in fields.items():
        box = wait_for(driver, f"[name={name}]")
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, f"#{button}").click()


def expect_page(driver, title: str, seconds: float = 20):
    """Waits for the page whose heading starts with ``title`` (a click
    returns before the next page has loaded)."""
    deadline = time.time() + seconds
    while True:
        try:
            h1 = driver.find_element(By.TAG_NAME, "h1").text
        except WebDriverException:
            h1 = ""
        if h1.startswith(title):
            return
        if time.time() > deadline:
            raise AssertionError(f"{driver.label}: expected {title!r}, got {h1!r} at "
                                 f"{driver.current_url}; notices: {notices(driver)}")
        time.sleep(0.1)


class Codes:
    """oathtool codes, each time step once (kauthd takes the next step early)."""

    def __init__(self, secret: str):
        self.secret = secret
        self.last = None

    def fresh(self) -> str:
        now = int(time.time()) // 30
        step = now if self.last is None else max(self.last + 1, now)
        while int(time.time()) // 30 + 1 < step:
            time.sleep(1)
        self.last = step
        out = subprocess.run(["oathtool", "--totp", "-b", "-N", f"@{step * 30}", self.secret],
                             check=True, capture_output=True, text=True, env={"TZ": "UTC"})
        return out.stdout.strip()


def sign_in(driver, password: str, answer=None):
    driver.get(URL + "sign-in")
    expect_page(driver, "Sign in")
    fill(driver, {"user": USER, "password": password}, "sign-in")
    if answer is not None:
        expect_page(driver, "Verification code")
        shot(driver, "code")
        fill(driver, {"code": answer}, "verify")
    expect_page(driver, "Welcome")


def qr_text(png: str) -> str:
    out = subprocess.run(["zbarimg", "-q", "--raw", png], capture_output=True, text=True)
    return out.stdout.strip()


def journey():
    a = browser("a")
    a.get(URL)
    expect_page(a, "Sign in")
    shot(a, "sign-in")
    sign_in(a, PASSWORD)
    shot(a, "dashboard")

    # Enroll: the QR code and the setup key, confirmed with an oathtool code.
    a.find_element(By.LINK_TEXT, "Two-factor").click()
    expect_page(a, "Two-factor authentication off")
    shot(a, "two-factor-off")
    fill(a, {"password": PASSWORD}, "enroll")
    expect_page(a, "Set up your authenticator app")
    key = wait_for(a, "#setup-key").text.replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{16,}", key), key
    enroll_png = shot(a, "enroll")
    uri = qr_text(enroll_png)
    assert uri.startswith("otpauth://totp/") and f"secret={key}" in uri, \
        f"the QR code on the page reads {uri!r}"
    print(f"the enrollment QR code reads {uri.split('?')[0]}?secret=…", flush=True)
    codes = Codes(key)
    fill(a, {"code": codes.fresh()}, "confirm")
    expect_page(a, "Your recovery codes")
    recovery = [li.text for li in a.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    assert len(recovery) >= 8, recovery
    shot(a, "recovery-codes")
    a.find_element(By.ID, "download").click()
    saved = os.path.join(a.downloads, "kpanel-recovery-codes.txt")
    deadline = time.time() + 15
    while not os.path.exists(saved) and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.exists(saved), f"no download in {a.downloads}: {os.listdir(a.downloads)}"
    text = open(saved).read()
    assert all(c in text for c in recovery), text
    a.find_element(By.ID, "saved").click()
    expect_page(a, "Two-factor authentication on")
    body = a.find_element(By.TAG_NAME, "body").text
    assert f"Recovery codes left: {len(recovery)}" in body, body
    shot(a, "two-factor-on")
    # Shown once: the codes page is gone.
    a.get(URL + "2fa/recovery-codes")
    expect_page(a, "Two-factor authentication on")

    # Log out, log in with a code.
    a.find_element(By.ID, "sign-out").click()
    expect_page(a, "Sign in")
    assert "signed out" in notices(a), notices(a)
    sign_in(a, PASSWORD, codes.fresh())
    shot(a, "dashboard-after-code")

    # Log out, log in with a recovery code: the panel says how many are left.
    a.find_element(By.ID, "sign-out").click()
    sign_in(a, PASSWORD, recovery[0])
    left = len(recovery) - 1
    assert str(left) in notices(a), f"no count of codes left in {notices(a)!r}"
    shot(a, "dashboard-after-recovery-code")
    a.find_element(By.LINK_TEXT, "Activity").click()
    expect_page(a, "Recent activity")
    body = a.find_element(By.TAG_NAME, "body").text
    assert "Signed in" in body and "Two-factor turned on" in body, body
    shot(a, "activity")

    # A second browser signs out everywhere; the first is thrown out at its next click.
    b = browser("b")
    sign_in(b, PASSWORD, recovery[1])
    b.find_element(By.LINK_TEXT, "Sessions").click()
    expect_page(b, "Where you are signed in")
    rows = b.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 2, [r.text for r in rows]
    assert len(b.find_elements(By.ID, "this-session")) == 1
    assert "HeadlessChrome" in b.find_element(By.TAG_NAME, "tbody").text or \
        "Chrome" in b.find_element(By.TAG_NAME, "tbody").text, "the browser's user agent is shown"
    shot(b, "sessions")
    b.find_element(By.ID, "sign-out-everywhere").click()
    expect_page(b, "Sign in")
    assert "Signed out everywhere (2 sessions)" in notices(b), notices(b)
    shot(b, "signed-out-everywhere")

    a.find_element(By.LINK_TEXT, "Sessions").click()
    expect_page(a, "Sign in")
    assert "You were signed out" in notices(a), notices(a)
    shot(a, "thrown-out")
    a.get(URL + "2fa")
    expect_page(a, "Sign in")

    # Forgot password: the reset link appears on the panel's console.
    a.find_element(By.LINK_TEXT, "Forgot your password?").click()
    expect_page(a, "Forgot your password?")
    shot(a, "forgot")
    fill(a, {"user": USER}, "send-link")
    expect_page(a, "Sign in")
    link = None
    deadline = time.time() + 10
    while link is None and time.time() < deadline:
        found = re.findall(r"password reset link for \S+: (\S+)", open(CONSOLE).read())
        link = found[-1] if found else None
        time.sleep(0.1)
    assert link, f"no reset link on the panel's console: {open(CONSOLE).read()!r}"
    a.get(link)
    expect_page(a, "Set a new password")
    shot(a, "reset")
    fill(a, {"new": NEW_PASSWORD, "again": NEW_PASSWORD}, "set-password")
    expect_page(a, "Sign in")
    assert "Your password is set" in notices(a), notices(a)
    sign_in(a, NEW_PASSWORD, recovery[2])

    # New recovery codes, then 2FA off, each with the password and a code.
    a.find_element(By.LINK_TEXT, "Two-factor").click()
    expect_page(a, "Two-factor authentication on")
    a.find_element(By.CSS_SELECTOR, "form[action='/2fa/regenerate'] [name=password]").send_keys(NEW_PASSWORD)
    a.find_element(By.CSS_SELECTOR, "form[action='/2fa/regenerate'] [name=code]").send_keys(recovery[3])
    a.find_element(By.ID, "regenerate").click()
    expect_page(a, "Your recovery codes")
    fresh = [li.text for li in a.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    assert fresh and not set(fresh) & set(recovery), fresh
    a.find_element(By.ID, "saved").click()
    expect_page(a, "Two-factor authentication on")
    a.find_element(By.CSS_SELECTOR, "form[action='/2fa/disable'] [name=password]").send_keys(NEW_PASSWORD)
    a.find_element(By.CSS_SELECTOR, "form[action='/2fa/disable'] [name=code]").send_keys(fresh[0])
    a.find_element(By.ID, "disable").click()
    expect_page(a, "Two-factor authentication off")
    assert "Two-factor authentication is off" in notices(a), notices(a)
    shot(a, "two-factor-disabled")


def main():
    try:
        journey()
    except BaseException:
        for driver in browsers:
            try:
                shot(driver, "failure")
            except Exception:
                pass
        raise
    finally:
        for driver in browsers:
            driver.quit()
    print("journey: done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
