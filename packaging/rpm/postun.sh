# mcr %postun ($1: 0 erase, 1 upgrade): forget removed units; after an
# upgrade, restart the relays that run (try-restart leaves stopped ones
# stopped). Only with systemd running: not in a chroot or image build.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart mcrd.service 'mcrd@*.service' >/dev/null 2>&1 || :
	fi
fi
