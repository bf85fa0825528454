#!/usr/bin/env bash
# Installs the real tools the interop tests run against, from Debian's packages. Fails loudly when one
# cannot be installed: the tests never skip a missing tool.
set -euo pipefail
packages=(skopeo umoci jq)
missing=()
for command in "${packages[@]}"; do
  command -v "$command" > /dev/null 2>&1 || missing+=("$command")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_prefix=()
  [ "$(id -u)" -eq 0 ] || sudo_prefix=(sudo)
  echo "Installing Debian packages: ${missing[*]}" >&2
  "${sudo_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_prefix[@]}" apt-get install -y -qq "${missing[@]}" > /dev/null
fi
# skopeo needs a signature policy for commands run without --insecure-policy.
for command in "${packages[@]}"; do
  command -v "$command" > /dev/null || { echo "error: $command is required by the tests but is not installed" >&2; exit 1; }
done
echo "Test tools: $(skopeo --version), $(umoci --version), $(jq --version)" >&2
