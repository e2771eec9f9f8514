#!/bin/sh
# Print the version of this checkout, the one the binaries report and the
# packages carry. It must be a valid Debian and RPM version that sorts the
# way releases do, so it is derived from the newest v* tag:
#
#   tag v1.2.0 on HEAD             1.2.0
#   3 commits after v1.2.0         1.2.0+3.g0123abcd    (+ sorts after 1.2.0)
#   tag v2.0.0-rc1 on HEAD         2.0.0~rc1            (~ sorts before 2.0.0)
#   no v* tag (a shallow CI clone) 0.0.0~git20250107.0123abcd
#   a modified work tree           one of the above with +dirty or .dirty
#   no git at all                  0.0.0~unknown
#
# The date is the commit's (not today's), so one commit always gets the same
# version. Usage: version.sh [DIR] (default: the current directory).
set -eu
cd "${1:-.}"

if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo 0.0.0~unknown
	exit 0
fi
hash=$(git rev-parse --short=8 HEAD)
dirty=
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=dirty
fi

if desc=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
	# vX.Y.Z[-pre]-N-gHASH: split off the last two fields.
	tag=${desc%-*-g*}
	rest=${desc#"$tag"-}
	n=${rest%%-*}
	v=${tag#v}
	case $v in
	*-*) v="${v%%-*}~$(echo "${v#*-}" | tr -- - .)" ;;
	esac
	meta=
	[ "$n" != 0 ] && meta="$n.g$hash"
	[ -n "$dirty" ] && meta="${meta:+$meta.}$dirty"
	echo "$v${meta:++$meta}"
else
	date=$(git log -1 --format=%cd --date=format:%Y%m%d HEAD)
	echo "0.0.0~git$date.$hash${dirty:+.$dirty}"
fi
