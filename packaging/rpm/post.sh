# mcr %post ($1: 1 install, 2 upgrade): create the workers' account and
# /run/mcr. Units are restarted in %postun, after the old package is gone.
systemd-sysusers mcr.conf
systemd-tmpfiles --create mcr.conf
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
