#!/usr/bin/env python3
"""kpanel, the reference panel: a two-page web login (password, then code)
and self-service (two-factor, recovery codes, sessions, activity, a
forgotten password) on kauthd, with Python's standard library only.

    examples/panel/panel.py --socket /run/kauthd/kauthd.sock --listen 127.0.0.1:8080

It must run as root or as a uid in kauthd's [access] pam_callers; as root,
give --run-as USER (a uid in pam_callers) so that it drops root once its
port is open, and kauthd checks the password and code of every change.
"""

import argparse
import os
import pwd
import signal
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The client package of this repository (clients/python), unless installed.
sys.path.insert(1, str(HERE.parent.parent / "clients" / "python"))

from kpanel.app import Panel, make_handler  # noqa: E402


def drop_privileges(name: str) -> None:
    entry = pwd.getpwnam(name)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        sys.exit(f"kpanel: could not drop root for {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", default=os.environ.get("KAUTHD_SOCKET", "/run/kauthd/kauthd.sock"),
                        help="kauthd's socket (default: $KAUTHD_SOCKET or /run/kauthd/kauthd.sock)")
    parser.add_argument("--listen", default="127.0.0.1:8080",
                        help="address and port, HOST:PORT (port 0: any free one)")
    parser.add_argument("--service", default="kpanel", help="the service name logins use")
    parser.add_argument("--kauthd-uid", type=int, action="append", default=None,
                        help="a uid kauthd may run as (default 0); repeatable")
    parser.add_argument("--run-as", metavar="USER", help="drop root for USER once listening")
    parser.add_argument("--secure-cookies", action="store_true",
                        help="mark cookies Secure (behind HTTPS; off for plain http://localhost)")
    args = parser.parse_args()

    host, _, port = args.listen.rpartition(":")
    panel = Panel(args.socket, service=args.service, server_uids=args.kauthd_uid or (0,),
                  secure_cookies=args.secure_cookies)
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(panel))
    server.daemon_threads = True
    if args.run_as:
        drop_privileges(args.run_as)
    elif os.geteuid() == 0:
        print("kpanel: running as root: kauthd takes root's word and checks no password or "
              "code for changes; use --run-as USER (in [access] pam_callers)", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bound_host, bound_port = server.server_address[:2]
    print(f"kpanel listening on http://{bound_host}:{bound_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
