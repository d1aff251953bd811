"""The panel's HTML. Everything that comes from a user or from kauthd goes
through ``h`` (HTML escaping); only this module's own markup does not."""

import html
import time

from . import qr

h = html.escape

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f3f5f8}
header{background:#1f3a5f;color:#fff;padding:.8rem 1.5rem;display:flex;align-items:center;gap:1.5rem;flex-wrap:wrap}
header .brand{font-weight:700;font-size:1.1rem}
header nav{display:flex;gap:1rem;flex:1}
header a{color:#dfe8f5;text-decoration:none}
header a:hover,header a.here{color:#fff;text-decoration:underline}
header form{margin:0}
header .who{opacity:.85}
main{max-width:64rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:1.5rem;margin-bottom:1.5rem;overflow-x:auto}
.narrow{max-width:26rem;margin:3rem auto}
h1{font-size:1.5rem;margin:0 0 1rem}
h2{font-size:1.15rem;margin:0 0 .75rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.55rem .7rem;border:1px solid #b9c2d0;border-radius:6px;font:inherit}
input.code{font-family:ui-monospace,monospace;letter-spacing:.15em;font-size:1.2rem}
button,.button{display:inline-block;margin-top:1rem;padding:.55rem 1.1rem;border:0;border-radius:6px;background:#2563eb;color:#fff;font:inherit;font-weight:600;cursor:pointer;text-decoration:none}
button.secondary,.button.secondary{background:#e6eaf0;color:#1d2330}
button.danger{background:#c62828}
button.link{background:none;color:#dfe8f5;padding:0;margin:0;font-weight:400}
.notice{padding:.7rem 1rem;border-radius:6px;margin-bottom:1rem}
.notice.info{background:#e7f1ff;border:1px solid #b6d4fe}
.notice.error{background:#fdecea;border:1px solid #f5c2c0}
.notice.drawing{white-space:pre;font-family:"DejaVu Sans Mono",ui-monospace,monospace;line-height:1;overflow-x:auto;background:#111;color:#fff;border:0}
table{width:100%;border-collapse:collapse;font-size:.95rem}
th,td{text-align:left;padding:.5rem .4rem;border-bottom:1px solid #e6eaf0;vertical-align:top}
th{color:#5a6475;font-weight:600}
td form{margin:0}
td button{margin:0;padding:.3rem .7rem;white-space:nowrap}
td.t{white-space:nowrap}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;background:#dcfce7;color:#166534;font-size:.8rem;font-weight:600}
.badge.off{background:#f1f5f9;color:#475569}
.muted{color:#5a6475}
.key{font-family:ui-monospace,monospace;font-size:1.1rem;background:#f3f5f8;padding:.4rem .6rem;border-radius:6px;display:inline-block;letter-spacing:.05em}
.enroll{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}
.enroll>div{flex:1;min-width:18rem}
svg.qr{width:220px;height:220px;flex:none;border:1px solid #dde2ea;border-radius:6px}
ol.codes{columns:2;font-family:ui-monospace,monospace;font-size:1.1rem}
.row{display:flex;gap:1rem;flex-wrap:wrap}
.row>form{flex:1;min-width:15rem}
.small{font-size:.85rem}
"""

NAV = [("/", "Dashboard"), ("/2fa", "Two-factor"), ("/sessions", "Sessions"), ("/activity", "Activity")]


def when(unix: int | None) -> str:
    if not unix:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(unix))


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{h(csrf)}">'


# kauthd draws the QR code of an enrollment at login with these, light
# modules in the text colour: shown light on dark, as on a terminal.
BLOCKS = set("▀▄█")


def notices(items) -> str:
    return "".join(
        f'<div class="notice {h(style)}{" drawing" if BLOCKS & set(text) else ""}" '
        f'role="status">{h(text)}</div>'
        for style, text in items)


def layout(title: str, body: str, *, user: str | None = None, csrf: str = "",
           path: str = "", notes=()) -> str:
    header = '<header><span class="brand">kpanel</span>'
    if user:
        links = "".join(
            f'<a href="{href}"{" class=here" if href == path else ""}>{label}</a>'
            for href, label in NAV)
        header += (f'<nav>{links}</nav><span class="who">{h(user)}</span>'
                   f'<form method="post" action="/sign-out">{csrf_field(csrf)}'
                   '<button class="link" id="sign-out">Sign out</button></form>')
    header += "</header>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{h(title)} · kpanel</title><link rel="stylesheet" href="/style.css"></head>'
        f'<body>{header}<main>{notices(notes)}{body}</main></body></html>'
    )


def sign_in(csrf: str, user: str = "") -> str:
    return f"""<div class="card narrow"><h1>Sign in</h1>
<form method="post" action="/sign-in">{csrf_field(csrf)}
<label for="user">User name</label><input type="text" id="user" name="user" value="{h(user)}" autocomplete="username" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button id="sign-in">Sign in</button></form>
<p class="small"><a href="/forgot">Forgot your password?</a></p></div>"""


def code(csrf: str, user: str, prompt: str) -> str:
    return f"""<div class="card narrow"><h1>Verification code</h1>
<p>Signing in as <strong>{h(user)}</strong>. Open your authenticator app and type the
6-digit code it shows. Lost your phone? Type one of your recovery codes instead.</p>
<form method="post" action="/code">{csrf_field(csrf)}
<label for="code">{h(prompt.strip().rstrip(":"))}</label>
<input type="text" class="code" id="code" name="code" inputmode="text" autocomplete="one-time-code" required autofocus>
<button id="verify">Verify</button></form>
<form method="post" action="/code/cancel">{csrf_field(csrf)}<button class="secondary">Cancel</button></form></div>"""


def dashboard(user: str, status: dict) -> str:
    enabled = status.get("enabled")
    badge = ('<span class="badge">on</span>' if enabled
             else '<span class="badge off">off</span>')
    left = (f'<p>Recovery codes left: <strong id="codes-left">{h(str(status.get("recovery_codes_left")))}</strong></p>'
            if enabled else '<p><a class="button" href="/2fa">Turn on two-factor authentication</a></p>')
    return f"""<div class="card"><h1>Welcome, {h(user)}</h1>
<p>Two-factor authentication: {badge}</p>{left}
<p class="muted">See where you are signed in on <a href="/sessions">Sessions</a>, and what
happened on your account on <a href="/activity">Activity</a>.</p></div>"""


def two_factor(csrf: str, status: dict) -> str:
    if not status.get("enabled"):
        password = ('<label for="password">Your password</label>'
                    '<input type="password" id="password" name="password" autocomplete="current-password" required>'
                    if status.get("has_password") else "")
        return f"""<div class="card"><h1>Two-factor authentication <span class="badge off">off</span></h1>
<p>With two-factor authentication, signing in needs a code from an authenticator app on your
phone as well as your password.</p>
<form method="post" action="/2fa/enroll">{csrf_field(csrf)}{password}
<button id="enroll">Set up two-factor authentication</button></form></div>"""
    proof = """<label>Your password</label><input type="password" name="password" autocomplete="current-password" required>
<label>A code from your app, or a recovery code</label><input type="text" class="code" name="code" autocomplete="one-time-code" required>"""
    return f"""<div class="card"><h1>Two-factor authentication <span class="badge">on</span></h1>
<p>Set up on {h(when(status.get("enrolled_at")))}; last used {h(when(status.get("last_used")))}.</p>
<p>Recovery codes left: <strong>{h(str(status.get("recovery_codes_left")))}</strong></p></div>
<div class="row">
<form class="card" method="post" action="/2fa/regenerate">{csrf_field(csrf)}<h2>New recovery codes</h2>
<p class="small muted">Your current recovery codes stop working.</p>{proof}
<button id="regenerate">Make new recovery codes</button></form>
<form class="card" method="post" action="/2fa/disable">{csrf_field(csrf)}<h2>Turn off</h2>
<p class="small muted">Signing in will need your password only.</p>{proof}
<button class="danger" id="disable">Turn off two-factor authentication</button></form></div>"""


def enroll(csrf: str, enrollment: dict) -> str:
    return f"""<div class="card"><h1>Set up your authenticator app</h1>
<div class="enroll">{qr.svg(enrollment["uri"])}
<div><ol><li>Open your authenticator app (Google Authenticator, Aegis, 1Password, …) and add an account.</li>
<li>Scan the QR code, or type this setup key:<br><span class="key" id="setup-key">{h(enrollment["setup_key"])}</span></li>
<li>Type the 6-digit code the app shows.</li></ol>
<form method="post" action="/2fa/confirm">{csrf_field(csrf)}
<label for="code">Code from the app</label>
<input type="text" class="code" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus>
<button id="confirm">Turn on</button></form>
<p class="small muted">This setup waits until {h(when(enrollment.get("expires")))}.</p></div></div></div>"""


def recovery_codes(csrf: str, codes: list[str]) -> str:
    items = "".join(f"<li>{h(c)}</li>" for c in codes)
    return f"""<div class="card"><h1>Your recovery codes</h1>
<p>Each code signs you in once when you do not have your phone. <strong>They are shown only
now</strong>: download them or write them down, and keep them somewhere safe.</p>
<ol class="codes" id="recovery-codes">{items}</ol>
<a class="button secondary" id="download" href="/2fa/recovery-codes.txt" download="kpanel-recovery-codes.txt">Download as a text file</a>
<form method="post" action="/2fa/codes-saved">{csrf_field(csrf)}<button id="saved">I have saved them</button></form></div>"""


def recovery_codes_text(user: str, codes: list[str]) -> str:
    lines = [f"Recovery codes for {user} (kpanel)", "Each code works once.", ""]
    return "\n".join(lines + codes) + "\n"


def sessions(csrf: str, rows: list[dict], current: str | None) -> str:
    body = []
    for s in rows:
        this = s.get("id") == current
        mark = ' <span class="badge" id="this-session">this browser</span>' if this else ""
        where = s.get("rhost") or s.get("tty") or "this server"
        body.append(
            f'<tr><td>{h(s.get("service") or "")}{mark}</td><td>{h(where)}</td>'
            f'<td class="small">{h(s.get("client") or "—")}</td>'
            f'<td class="t">{h(when(s.get("started")))}</td><td class="t">{h(when(s.get("last_active")))}</td>'
            f'<td><form method="post" action="/sessions/sign-out">{csrf_field(csrf)}'
            f'<input type="hidden" name="id" value="{h(s.get("id") or "")}">'
            f'<button class="secondary">Sign out</button></form></td></tr>')
    table = ("<table><thead><tr><th>Service</th><th>From</th><th>Client</th><th>Started</th>"
             f"<th>Last active</th><th></th></tr></thead><tbody>{''.join(body)}</tbody></table>"
             if body else '<p class="muted">No open sessions.</p>')
    return f"""<div class="card"><h1>Where you are signed in</h1>{table}
<form method="post" action="/sessions/sign-out-all">{csrf_field(csrf)}
<button class="danger" id="sign-out-everywhere">Sign out everywhere</button>
<p class="small muted">Ends every session, SSH logins included, and this one.</p></form></div>"""


EVENT_NAMES = {
    "login_success": "Signed in", "login_failure": "Failed sign-in", "lockout": "Locked out",
    "enroll": "Two-factor turned on", "disable": "Two-factor turned off",
    "recovery_code_used": "Recovery code used", "recovery_codes_regenerated": "New recovery codes",
    "password_changed": "Password changed", "password_reset": "Password reset",
    "reset_token_created": "Password reset asked", "session_open": "Session started",
    "session_close": "Session ended", "sign_out": "Signed out", "guard_reset": "Code guard reset",
}


def activity(events: list[dict]) -> str:
    rows = "".join(
        f'<tr><td class="t">{h(when(e.get("at")))}</td><td>{h(EVENT_NAMES.get(e.get("event"), e.get("event") or ""))}</td>'
        f'<td>{h(e.get("service") or "")}</td><td>{h(e.get("rhost") or "")}</td>'
        f'<td class="small">{h(e.get("detail") or "")}</td></tr>'
        for e in events)
    table = ("<table><thead><tr><th>When</th><th>What</th><th>Service</th><th>From</th><th>Detail</th>"
             f"</tr></thead><tbody>{rows}</tbody></table>" if rows else '<p class="muted">Nothing yet.</p>')
    return f'<div class="card"><h1>Recent activity</h1>{table}</div>'


def forgot(csrf: str) -> str:
    return f"""<div class="card narrow"><h1>Forgot your password?</h1>
<p>Type your user name: we send a link to set a new password (this demo prints it on the
panel's console instead of sending mail).</p>
<form method="post" action="/forgot">{csrf_field(csrf)}
<label for="user">User name</label><input type="text" id="user" name="user" autocomplete="username" required autofocus>
<button id="send-link">Send the link</button></form>
<p class="small"><a href="/sign-in">Back to sign-in</a></p></div>"""


def reset(csrf: str, user: str, token: str) -> str:
    return f"""<div class="card narrow"><h1>Set a new password</h1>
<form method="post" action="/reset">{csrf_field(csrf)}
<input type="hidden" name="user" value="{h(user)}"><input type="hidden" name="token" value="{h(token)}">
<p>For <strong>{h(user)}</strong>.</p>
<label for="new">New password</label><input type="password" id="new" name="new" autocomplete="new-password" required autofocus>
<label for="again">New password again</label><input type="password" id="again" name="again" autocomplete="new-password" required>
<button id="set-password">Set the password</button></form></div>"""
