#!/bin/sh
# Print the changelog (deb-changelog(5)) of the .deb, which as a package
# built upstream is native and has it in changelog.gz: one entry for
# the version being built. Debian wants one in every package; what changed
# between versions is in CHANGELOG.md, shipped beside it. The date is
# SOURCE_DATE_EPOCH's, so the same commit gives the same file.
# Usage: changelog.sh VERSION MAINTAINER COMMIT
set -eu
version=$1 maintainer=$2 commit=$3
date=$(LC_ALL=C date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
cat <<END
mcr ($version) unstable; urgency=medium

  * Built from ${commit:-an unknown commit}. What changed is in
    /usr/share/doc/mcr/CHANGELOG.md.

 -- $maintainer  $date
END
