# shellcheck shell=bash
# tests/deps.sh — the Debian packages iscsifs needs to build and test, and the one
# function that installs the missing ones. Sourced by tests/run.sh and
# contrib/quickstart.sh; the package list lives here and nowhere else.

# Build: meson .. libjson-c-dev. Run: fuse3 (fusermount3). Tests: the rest — tgt is the
# iSCSI target the integration tests log in to, libiscsi-bin has iscsi-ls/-inq/
# -readcapacity16 to check it, and gdisk, e2fsprogs, fuse2fs, qemu-utils are the
# "real clients" of test_core_clients.sh; fdisk (sfdisk) and pv those of
# test_feat_partsanywhere.sh and test_feat_writeidioms.sh. The ecosystem tests
# (test_eco_*) use python3-yaml (the Pod manifest), man-db and groff-base (`man -l`),
# bash-completion, systemd (only systemd-analyze verify: nothing is started; it
# installs cleanly in a container), passwd (useradd for the no-root test) and promtool
# (deps_promtool).
ISCSIFS_DEB_PACKAGES=(
	meson ninja-build pkg-config gcc libc6-dev
	libfuse3-dev fuse3 libiscsi-dev libiscsi-bin libblkid-dev libjson-c-dev
	tgt fio python3 gdisk fdisk e2fsprogs fuse2fs qemu-utils attr pv
	util-linux procps iproute2 valgrind
	python3-yaml man-db groff-base bash-completion systemd passwd
)

# deps_missing [PKG...]: print the packages (default: all of ISCSIFS_DEB_PACKAGES)
# that dpkg does not report as "install ok installed".
deps_missing()
{
	local pkg status
	(($#)) || set -- "${ISCSIFS_DEB_PACKAGES[@]}"
	for pkg in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=
		[[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
	done
}

# deps_install [PKG...]: install whatever is missing, with one `apt-get update` first.
# Root runs apt-get directly; others go through sudo (non-interactively) when there is
# one. Returns non-zero, with a message naming the packages, when it cannot.
deps_install()
{
	local -a missing sudo=()

	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "deps: dpkg-query not found: this script installs Debian packages;" \
			"install these by hand: ${ISCSIFS_DEB_PACKAGES[*]}" >&2
		return 1
	fi
	mapfile -t missing < <(deps_missing "$@")
	((${#missing[@]})) || return 0

	echo "deps: installing missing packages: ${missing[*]}" >&2
	if ((EUID != 0)); then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "deps: missing packages (${missing[*]}) and not root, and sudo is" \
				"not installed: run as root: apt-get install ${missing[*]}" >&2
			return 1
		fi
		sudo=(sudo -n)
	fi
	if ! "${sudo[@]}" apt-get update; then
		echo "deps: apt-get update failed (sudo needs a password? run as root)" >&2
		return 1
	fi
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y "${missing[@]}"; then
		echo "deps: apt-get install ${missing[*]} failed" >&2
		return 1
	fi
	mapfile -t missing < <(deps_missing "${missing[@]}")
	if ((${#missing[@]})); then
		echo "deps: still missing after apt-get install: ${missing[*]}" >&2
		return 1
	fi
}

# deps_promtool: print the path of a promtool, taken out of Debian's `prometheus`
# package with `apt-get download` + `dpkg-deb -x` into PROMTOOL_DIR (default
# /var/cache/iscsifs-tests): the Prometheus server is neither installed nor started.
# Returns non-zero (and prints nothing) when it cannot be had.
deps_promtool()
{
	local dir=${PROMTOOL_DIR:-/var/cache/iscsifs-tests} deb
	if command -v promtool >/dev/null 2>&1; then
		command -v promtool
		return 0
	fi
	if [[ ! -x $dir/usr/bin/promtool ]]; then
		mkdir -p "$dir/deb" || return 1
		(cd "$dir/deb" && apt-get download prometheus >/dev/null 2>&1) ||
			{ apt-get update >/dev/null 2>&1 &&
				(cd "$dir/deb" && apt-get download prometheus >/dev/null 2>&1); } ||
			return 1
		deb=$(ls "$dir"/deb/prometheus_*.deb 2>/dev/null | head -n 1)
		[[ -n $deb ]] && dpkg-deb -x "$deb" "$dir/x" || return 1
		install -m 755 "$dir/x/usr/bin/promtool" -D "$dir/usr/bin/promtool" || return 1
		rm -rf "$dir/x" "$dir/deb"
	fi
	echo "$dir/usr/bin/promtool"
}
