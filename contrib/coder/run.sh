#!/usr/bin/env bash
# vaultfs for Coder workspaces: `run.sh start` installs vaultfs if missing,
# waits (bounded) for a Vault token and mounts; `run.sh stop` unmounts.
#
# Settings come from the environment (main.tf exports them; set them by hand
# to run this script anywhere):
#   VAULTFS_MOUNT_PATH    where to mount (default ~/secrets)
#   VAULTFS_VERSION       release to install when vaultfs is missing (default latest)
#   VAULTFS_TTL           cache TTL (default 60s)
#   VAULTFS_KV_MOUNTS     comma-separated KV mounts to show (default: all the token sees)
#   VAULTFS_TOKEN_WAIT    seconds to wait for VAULT_TOKEN or ~/.vault-token (default 120)
#   VAULTFS_BIN           use this binary; never download
#   VAULTFS_INSTALL_DIR   where to install (default ~/.local/bin)
#   VAULTFS_DOWNLOAD_URL  release archive URL (default: GitHub release for VAULTFS_VERSION)
# VAULT_ADDR (and VAULT_NAMESPACE, VAULT_CACERT, ...) are read by vaultfs itself.
set -euo pipefail

action="${1:-start}"
say() { printf 'vaultfs: %s\n' "$*"; }
die() { printf 'vaultfs: %s\n' "$*" >&2; exit 1; }

mount_path="${VAULTFS_MOUNT_PATH:-~/secrets}"
case "$mount_path" in
  "~") mount_path="$HOME" ;;
  "~/"*) mount_path="$HOME/${mount_path#"~/"}" ;;
esac
install_dir="${VAULTFS_INSTALL_DIR:-$HOME/.local/bin}"

# Sets $bin to the vaultfs binary, or to "" when there is none yet.
find_bin() {
  bin=""
  if [ -n "${VAULTFS_BIN:-}" ]; then
    [ -x "$VAULTFS_BIN" ] || die "VAULTFS_BIN=$VAULTFS_BIN is not an executable file"
    bin="$VAULTFS_BIN"
  elif command -v vaultfs >/dev/null 2>&1; then
    bin="$(command -v vaultfs)"
  elif [ -x "$install_dir/vaultfs" ]; then
    bin="$install_dir/vaultfs"
  fi
}

# Downloads a release into $install_dir and sets $bin.
install_bin() {
  local version="${VAULTFS_VERSION:-latest}" arch url tmp
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no vaultfs release for $(uname -m); set VAULTFS_BIN" ;;
  esac
  if [ -n "${VAULTFS_DOWNLOAD_URL:-}" ]; then
    url="$VAULTFS_DOWNLOAD_URL"
  elif [ "$version" = latest ]; then
    url="https://github.com/vaultfs/vaultfs/releases/latest/download/vaultfs-$arch-unknown-linux-musl.tar.gz"
  else
    url="https://github.com/vaultfs/vaultfs/releases/download/v${version#v}/vaultfs-$arch-unknown-linux-musl.tar.gz"
  fi
  say "installing vaultfs $version into $install_dir"
  tmp="$(mktemp -d)"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$tmp/vaultfs.tar.gz" "$url" || die "download failed: $url"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$tmp/vaultfs.tar.gz" "$url" || die "download failed: $url"
  else
    die "neither curl nor wget is installed; set VAULTFS_BIN"
  fi
  tar -xzf "$tmp/vaultfs.tar.gz" -C "$tmp" || die "cannot unpack $url"
  mkdir -p "$install_dir"
  install -m 0755 "$(find "$tmp" -type f -name vaultfs | head -n 1)" "$install_dir/vaultfs"
  rm -rf "$tmp"
  bin="$install_dir/vaultfs"
}

has_token() {
  [ -n "${VAULT_TOKEN:-}" ] || [ -n "${BAO_TOKEN:-}" ] || [ -s "$HOME/.vault-token" ]
}

if [ "$action" = stop ]; then
  find_bin
  [ -n "$bin" ] || exit 0
  # Nothing mounted is fine when stopping.
  "$bin" unmount "$mount_path" 2>/dev/null || "$bin" unmount --lazy "$mount_path" 2>/dev/null || true
  exit 0
fi
[ "$action" = start ] || die "usage: run.sh [start|stop]"

command -v fusermount3 >/dev/null 2>&1 || [ "$(id -u)" = 0 ] \
  || die "fusermount3 is missing: install the fuse3 package in the workspace image"
[ -e /dev/fuse ] || die "/dev/fuse is missing: the workspace container needs --device /dev/fuse"
[ -n "${VAULT_ADDR:-${BAO_ADDR:-}}" ] || die "VAULT_ADDR is not set (add a Vault module, or set it on the agent)"

find_bin
[ -n "$bin" ] || install_bin

# Other modules (vault-github, vault-jwt, ...) log in from their own start
# scripts, which run in parallel with this one: the token may come later.
wait_s="${VAULTFS_TOKEN_WAIT:-120}"
deadline=$((SECONDS + wait_s))
if ! has_token; then
  say "waiting up to ${wait_s}s for VAULT_TOKEN or ~/.vault-token"
  until has_token; do
    [ "$SECONDS" -lt "$deadline" ] || die "no Vault token after ${wait_s}s: set VAULT_TOKEN or log in with \`vault login\`"
    sleep 0.5
  done
fi

# A mount left by an earlier start (same or other settings) is replaced.
"$bin" unmount "$mount_path" >/dev/null 2>&1 || true

args=(mount "$mount_path" --ttl "${VAULTFS_TTL:-60s}")
IFS=',' read -r -a kvs <<<"${VAULTFS_KV_MOUNTS:-}"
for kv in "${kvs[@]}"; do
  kv="${kv//[[:space:]]/}"
  [ -z "$kv" ] || args+=(--kv "$kv")
done
"$bin" "${args[@]}"
say "Vault secrets mounted at $mount_path"
