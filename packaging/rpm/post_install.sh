# kauthd %post: the state directory (root only, kept on erase); the unit
# follows the system's presets. No PAM file is touched.
mkdir -p /var/lib/kauthd
chown root:root /var/lib/kauthd
chmod 0700 /var/lib/kauthd
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset kauthd.socket kauthd.service >/dev/null 2>&1 || :
    else
        systemctl try-restart kauthd.socket kauthd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 1 ]; then
    echo "kauthd is installed; no login asks for a code yet. Start it (systemctl enable --now kauthd)," >&2
    echo "enroll root (kauthctl 2fa enroll), add pam_kpanel.so to a PAM stack, run kauthctl doctor," >&2
    echo "and test a login from a second session before closing the first. See pam_kpanel(8)." >&2
fi
