# mcr %preun ($1: 0 erase, 1 upgrade): stop every relay before an erase;
# on an upgrade they keep running until %postun restarts them.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	systemctl stop mcrd.service 'mcrd@*.service' >/dev/null 2>&1 || :
fi
