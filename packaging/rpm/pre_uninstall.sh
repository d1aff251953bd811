# kauthd %preun: on erase, refuse while a PAM file still loads pam_kpanel.so
# (every login through it would fail), then stop the service.
if [ "$1" -eq 0 ]; then
    users=""
    for f in /etc/pam.d/*; do
        [ -f "$f" ] || continue
        if grep -Eq '^[[:space:]]*-?[A-Za-z]+[[:space:]].*pam_kpanel\.so' "$f"; then
            users="$users $f"
        fi
    done
    if [ -n "$users" ] && [ "${KAUTHD_FORCE_REMOVE:-}" != "1" ]; then
        echo "kauthd: these PAM files still use pam_kpanel.so:$users" >&2
        echo "kauthd: take the pam_kpanel lines out first (keep a root shell open), or set KAUTHD_FORCE_REMOVE=1." >&2
        exit 1
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now kauthd.service kauthd.socket >/dev/null 2>&1 || :
    fi
fi
