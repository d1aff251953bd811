"""A user the policy requires to have 2FA, without it, signs in to the
reference panel in headless Chromium: kauthd runs the enrollment in the
login, the panel shows its QR drawing on the code page, and the code
from it (by oathtool) signs in. Run by tests/panel_browser.rs; the
environment is journey.py's.
"""

import re

from selenium.webdriver.common.by import By

from journey import (PASSWORD, URL, USER, Codes, browser, browsers, expect_page, fill, notices,
                     qr_text, shot)


def main():
    try:
        c = browser("c")
        c.get(URL + "sign-in")
        fill(c, {"user": USER, "password": PASSWORD}, "sign-in")
        expect_page(c, "Verification code")
        key = re.search(r"Setup key: ([A-Z2-7 ]+)", notices(c))
        assert key, f"no setup key on the code page: {notices(c)!r}"
        secret = key.group(1).replace(" ", "")
        uri = qr_text(shot(c, "enroll-at-login"))
        assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri, \
            f"the QR drawing on the code page reads {uri!r}"
        fill(c, {"code": Codes(secret).fresh()}, "verify")
        expect_page(c, "Welcome")
        assert re.search(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", notices(c)), \
            f"no recovery codes shown: {notices(c)!r}"
        assert "Two-factor authentication: on" in c.find_element(By.TAG_NAME, "body").text
        shot(c, "dashboard-after-enroll-at-login")
    finally:
        for driver in browsers:
            driver.quit()
    print("enroll at login: done", flush=True)


if __name__ == "__main__":
    main()
