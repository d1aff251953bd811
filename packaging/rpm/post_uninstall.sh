# kauthd %postun: /var/lib/kauthd (every enrollment) is kept.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ] && [ -d /var/lib/kauthd ]; then
    echo "kauthd: kept /var/lib/kauthd (accounts and two-factor secrets); rm -rf /var/lib/kauthd deletes them." >&2
fi
