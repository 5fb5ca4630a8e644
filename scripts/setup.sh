#!/usr/bin/env bash
# Installs what hakmem needs on Debian 12 and builds libperf into .deps/.
# Idempotent: when everything is present it only checks, in well under a second.
#   scripts/setup.sh           install what is missing (apt-get as root, or through sudo)
#   scripts/setup.sh --check   only say what is missing; exit 1 if anything is
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# Packages: build tools, the allocator's dependencies, the peers for comparison.
packages=(build-essential pkg-config liburing-dev check systemtap-sdt-dev linux-perf
          libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4 gnuplot-nox xz-utils
          python3 bison flex)

say() { printf 'setup: %s\n' "$*" >&2; }

missing_packages() {
	local p
	for p in "${packages[@]}" "$(kernel_source_package)"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			printf '%s\n' "$p"
	done
}

# The newest linux-source-X.Y that apt knows of (libperf is not packaged in
# Debian 12; its source comes with the kernel source package).
kernel_source_package() {
	local installed
	installed=$(dpkg-query -W -f='${Package}\n' 'linux-source-*' 2>/dev/null |
		grep -E '^linux-source-[0-9.]+$' | sort -V | tail -n1 || true)
	if [ -n "$installed" ] && [ -f "/usr/src/$installed.tar.xz" ]; then
		echo "$installed"; return
	fi
	local known
	known=$(apt-cache --names-only search '^linux-source-[0-9.]+$' 2>/dev/null |
		awk '{print $1}' | sort -V | tail -n1 || true)
	echo "${known:-linux-source-6.12}"
}

# apt-get as root: directly when root, else through sudo (only apt-get: the rest of
# the set-up, libperf in .deps/, stays the user's).
apt_install() {
	local asroot=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			say "missing packages: $*"
			say "run 'scripts/setup.sh' (or 'make setup') once as root to install them"
			exit 1
		fi
		say "not root: running apt-get with sudo"
		asroot=(sudo --)
	fi
	local apt=("${asroot[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
	# An empty or stale package list makes new names unknown: update first.
	if ! "${apt[@]}" install -y -q --no-install-recommends "$@" >"$deps/apt.log" 2>&1; then
		"${apt[@]}" update -q >>"$deps/apt.log" 2>&1
		"${apt[@]}" install -y -q --no-install-recommends "$@" >>"$deps/apt.log" 2>&1 ||
			{ say "apt-get install failed, see $deps/apt.log"; tail -n 20 "$deps/apt.log" >&2; exit 1; }
	fi
}

libperf_ready() {
	[ -f "$deps/libperf/lib/pkgconfig/libperf.pc" ] &&
	[ -f "$deps/libperf/lib/libperf.a" ] && [ -f "$deps/libperf/lib/libapi.a" ]
}

build_libperf() {
	local pkg tarball src
	pkg=$(kernel_source_package)
	tarball="/usr/src/$pkg.tar.xz"
	[ -f "$tarball" ] || { say "$tarball not found (package $pkg)"; exit 1; }
	say "building libperf from $tarball (about 30 s)"
	rm -rf "$deps/src" "$deps/libperf"
	mkdir -p "$deps/src"
	tar -xJf "$tarball" -C "$deps/src" --wildcards "$pkg/tools/*" "$pkg/include/*" \
		"$pkg/scripts/*" "$pkg/Makefile" 2>/dev/null ||
		tar -xJf "$tarball" -C "$deps/src" --wildcards "$pkg/tools/*"
	src="$deps/src/$pkg/tools/lib/perf"
	# Plain 'make install' stops at the documentation (no asciidoc): install the parts.
	make -C "$src" -j"$(nproc)" prefix="$deps/libperf" libdir="$deps/libperf/lib" \
		install_lib install_headers install_pkgconfig >"$deps/libperf-build.log" 2>&1 ||
		{ say "libperf build failed, see $deps/libperf-build.log"; tail -n 20 "$deps/libperf-build.log" >&2; exit 1; }
	# Static linking needs libapi too (libperf.so carries it, libperf.a does not).
	cp "$deps/src/$pkg/tools/lib/api/libapi.a" "$deps/libperf/lib/libapi.a"
	rm -f "$deps/libperf/lib/"libperf.so*   # link statically: no rpath games
	sed -i 's|^Libs: .*|Libs: -L${libdir} -lperf -lapi|' "$deps/libperf/lib/pkgconfig/libperf.pc"
	rm -rf "$deps/src"
}

mkdir -p "$deps"
miss=$(missing_packages | tr '\n' ' ')
if [ -n "${miss// /}" ]; then
	if [ $check_only = 1 ]; then say "missing packages: $miss"; exit 1; fi
	say "installing: $miss"
	# shellcheck disable=SC2086
	apt_install $miss
fi
if ! libperf_ready; then
	if [ $check_only = 1 ]; then say "libperf not built in .deps/libperf"; exit 1; fi
	build_libperf
fi
libperf_ready || { say "libperf missing after build"; exit 1; }
exit 0
