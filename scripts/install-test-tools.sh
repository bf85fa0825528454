#!/usr/bin/env bash
# Installs the real tools the tests run against, from Debian's packages: skopeo and umoci (interop),
# docker-registry (CNCF Distribution, started by the tests on 127.0.0.1), docker.io (dockerd, started by
# the tests with vfs storage on their own socket), podman (loads our archives), apache2-utils (htpasswd),
# openssl (test certificates), gpg (keys for the `skopeo --sign-by` signatures the tests copy and
# verify), GNU tar, gzip, bzip2, xz and zstd (compressed archives, which Gantry decompresses with them
# as containers/storage does for xz), jq, python3 (its pty module puts gantry on a real pseudo-terminal in the CLI
# tests; it also holds fcntl locks in the lock tests); for containers-storage: uidmap (newuidmap/newgidmap) and util-linux's
# unshare (rootless user namespaces), btrfs-progs and mount's losetup (the btrfs driver's loop-mounted test file system) and
# attr (getfattr cross-checks the xattrs layers set); ostree (the ostree: transport commits, checks out and fsck-checks
# repositories with it); squashfs-tools and fakeroot (the sif: example transport converts SIF root file systems with
# unsquashfs under fakeroot, as skopeo does; its tests make squashfs images with mksquashfs, set xattrs with setfattr,
# and write and read SIF files with siftool, sylabs/sif's own tool); man-db and groff-base (`man -l` renders the CLI's
# generated man pages), zsh and fish (they load the generated shell completions; bash is there already);
# the libdeflate0 and libzstd1 libraries (core's parallel gzip and zstd compressors load them), libisal2 (core
# decompresses gzip with ISA-L's inflate where it loads) with libisal-dev and gcc (a test compiles a C program
# against ISA-L's igzip_lib.h to check the struct layout core assumes).
# Fails loudly when one cannot be installed: tests never skip a missing tool.
set -euo pipefail
# command name → Debian package
declare -A package_of=(
  [skopeo]=skopeo
  [umoci]=umoci
  [jq]=jq
  [docker-registry]=docker-registry
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [tar]=tar
  [podman]=podman
  [dockerd]=docker.io
  [docker]=docker.io
  [gpg]=gpg
  [gpg-agent]=gpg-agent
  [gpgconf]=gpgconf
  [gzip]=gzip
  [newuidmap]=uidmap
  [newgidmap]=uidmap
  [btrfs]=btrfs-progs
  [mkfs.btrfs]=btrfs-progs
  [losetup]=mount
  [unshare]=util-linux
  [python3]=python3
  [getfattr]=attr
  [bzip2]=bzip2
  [xz]=xz-utils
  [zstd]=zstd
  [ostree]=ostree
  [unsquashfs]=squashfs-tools
  [mksquashfs]=squashfs-tools
  [fakeroot]=fakeroot
  [setfattr]=attr
  [siftool]=siftool
  [man]=man-db
  [groff]=groff-base
  [zsh]=zsh
  [fish]=fish
  [gcc]=gcc
)
# shared library → Debian package (core compresses gzip with libdeflate and zstd with libzstd, and
# decompresses gzip with ISA-L, through koffi)
declare -A library_package_of=(
  [libdeflate.so.0]=libdeflate0
  [libzstd.so.1]=libzstd1
  [libisal.so.2]=libisal2
)
# header → Debian package (C headers the tests compile against)
declare -A header_package_of=(
  [/usr/include/isa-l/igzip_lib.h]=libisal-dev
)
missing=()
for command in "${!package_of[@]}"; do
  command -v "$command" > /dev/null 2>&1 || missing+=("${package_of[$command]}")
done
# The cache is read once into a variable: `ldconfig -p | grep -q` fails under pipefail when grep
# exits at its first match before ldconfig has written everything (SIGPIPE).
has_library() { grep -qF "$1" <<< "$(ldconfig -p)"; }
for library in "${!library_package_of[@]}"; do
  has_library "$library" || missing+=("${library_package_of[$library]}")
done
for header in "${!header_package_of[@]}"; do
  [ -f "$header" ] || missing+=("${header_package_of[$header]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_prefix=()
  [ "$(id -u)" -eq 0 ] || sudo_prefix=(sudo)
  echo "Installing Debian packages: ${missing[*]}" >&2
  "${sudo_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_prefix[@]}" apt-get install -y -qq "${missing[@]}" > /dev/null
fi
for command in "${!package_of[@]}"; do
  command -v "$command" > /dev/null || { echo "error: $command (Debian package ${package_of[$command]}) is required by the tests but is not installed" >&2; exit 1; }
done
for library in "${!library_package_of[@]}"; do
  has_library "$library" || { echo "error: $library (Debian package ${library_package_of[$library]}) is required by the tests but is not installed" >&2; exit 1; }
done
for header in "${!header_package_of[@]}"; do
  [ -f "$header" ] || { echo "error: $header (Debian package ${header_package_of[$header]}) is required by the tests but is not installed" >&2; exit 1; }
done
# Debian's docker-registry package may start a registry on :5000 through its init script; the tests
# start their own instances on free ports and do not need it.
echo "Test tools: $(skopeo --version), $(umoci --version), $(docker-registry --version | head -n 1)" >&2
