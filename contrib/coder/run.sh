#!/usr/bin/env bash
# vaultfs for Coder workspaces.
#   run.sh start          install the requested vaultfs if needed, wait (bounded)
#                         for a token Vault accepts, mount; succeeds at once when
#                         the same settings are already mounted and live
#   run.sh stop           unmount (nothing mounted is fine)
#   run.sh wait [SECS]    wait until the mount is live (default 120s)
#
# Settings come from the environment (main.tf exports them; set them by hand
# to run this script anywhere):
#   VAULTFS_MOUNT_PATH    where to mount (default ~/secrets)
#   VAULTFS_VERSION       release to use, e.g. 0.1.0 (default latest: whatever is
#                         installed, else the newest release)
#   VAULTFS_BASE_URL      where releases are (default https://github.com/vaultfs/vaultfs/releases);
#                         files are at <base>/download/v<version>/ and <base>/latest/download/
#   VAULTFS_TTL           cache TTL (default 60s)
#   VAULTFS_KV_MOUNTS     comma-separated KV mounts to show (default: all the token sees)
#   VAULTFS_TOKEN_WAIT    seconds to wait for a token Vault accepts (default 120)
#   VAULTFS_AUDIT_LOG     record every read of a secret in this file (vaultfs audit)
#   VAULTFS_BIN           use this binary; never download
#   VAULTFS_INSTALL_DIR   where to install (default ~/.local/bin)
#   VAULTFS_DOWNLOAD_URL  one archive's URL (its SHA256SUMS must be beside it)
# VAULT_ADDR (and VAULT_NAMESPACE, VAULT_CACERT, ...) are read by vaultfs itself.
# CODER_SCRIPT_BIN_DIR (set by the Coder agent, on the workspace's PATH) gets a
# `vaultfs` link to the binary in use.
set -euo pipefail

action="${1:-start}"
say() { printf 'vaultfs: %s\n' "$*"; }
die() {
  printf 'vaultfs: %s\n' "$*" >&2
  exit 1
}

mount_path="${VAULTFS_MOUNT_PATH:-$HOME/secrets}"
case "$mount_path" in
  \~) mount_path="$HOME" ;;
  \~/*) mount_path="$HOME/${mount_path#\~/}" ;;
esac
install_dir="${VAULTFS_INSTALL_DIR:-$HOME/.local/bin}"
version="${VAULTFS_VERSION:-latest}"
version="${version#v}"
base_url="${VAULTFS_BASE_URL:-https://github.com/vaultfs/vaultfs/releases}"
base_url="${base_url%/}"
state_dir="${XDG_STATE_HOME:-$HOME/.local/state}/vaultfs"

# The mount table's spelling of the mount path (octal escapes).
mountinfo_path() {
  local p="${1//\\/\\134}"
  p="${p// /\\040}"
  p="${p//$'\t'/\\011}"
  printf '%s' "${p//$'\n'/\\012}"
}

# 0 when vaultfs is mounted at the mount path (live, or its daemon gone).
is_mounted() {
  local want fields
  want="$(mountinfo_path "$mount_path")"
  # Through the environment: `awk -v` would turn the escapes back.
  fields="$(want="$want" awk '$5 == ENVIRON["want"] { sub(/.* - /, ""); print $1, $2 }' /proc/self/mountinfo | tail -n 1)"
  case "$fields" in
    "fuse.vaultfs "* | "fuse vaultfs") return 0 ;;
    *) return 1 ;;
  esac
}

# 0 when a vaultfs mount at the mount path answers.
is_live() { is_mounted && timeout 10 stat -- "$mount_path" >/dev/null 2>&1; }

# fetch URL FILE; on failure $fetch_err says why (for one error line).
fetch() {
  local out
  if command -v curl >/dev/null 2>&1; then
    out="$(curl -fsSL --retry 3 -o "$2" "$1" 2>&1)" && return 0
  elif command -v wget >/dev/null 2>&1; then
    out="$(wget -q -O "$2" "$1" 2>&1)" && return 0
  else
    die "neither curl nor wget is installed; put vaultfs in the image or set VAULTFS_BIN"
  fi
  out="${out##*$'\n'}"
  fetch_err="${out:-download failed}"
  return 1
}

# "0.1.0" from `vaultfs 0.1.0`, or "" when BIN does not run.
version_of() { "$1" --version 2>/dev/null | awk '{ print $2; exit }' || true; }

# Downloads the release archive and its SHA256SUMS, verifies, and installs
# the binary into $install_dir; sets $bin.
install_bin() {
  local arch target dir file url sums tmp want got
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no vaultfs release for $(uname -m); put vaultfs in the image or set VAULTFS_BIN" ;;
  esac
  target="$arch-unknown-linux-musl"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: $tmp is local
  trap "rm -rf '$tmp'" EXIT
  if [ -n "${VAULTFS_DOWNLOAD_URL:-}" ]; then
    url="$VAULTFS_DOWNLOAD_URL"
    dir="${url%/*}"
    file="${url##*/}"
  else
    if [ "$version" = latest ]; then dir="$base_url/latest/download"; else dir="$base_url/download/v$version"; fi
  fi
  sums="$dir/SHA256SUMS"
  fetch "$sums" "$tmp/SHA256SUMS" || die "cannot download $sums ($fetch_err)"
  if [ -z "${file:-}" ]; then
    if [ "$version" = latest ]; then
      file="$(awk -v t="-$target.tar.gz" 'substr($2, length($2) - length(t) + 1) == t && $2 ~ /^vaultfs-/ { print $2; exit }' "$tmp/SHA256SUMS")"
    else
      file="vaultfs-$version-$target.tar.gz"
    fi
    url="$dir/$file"
  fi
  want="$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")"
  [ -n "$want" ] || die "$sums lists no ${file:-archive for $target}"
  say "installing vaultfs $version ($file) into $install_dir"
  fetch "$url" "$tmp/archive.tar.gz" || die "cannot download $url ($fetch_err)"
  got="$(sha256sum "$tmp/archive.tar.gz" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "checksum mismatch for $file (SHA256SUMS says $want, the download is $got): refusing to install it"
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/archive.tar.gz" -C "$tmp/x" || die "cannot unpack $url"
  local new="$tmp/x/${file%.tar.gz}/vaultfs"
  [ -f "$new" ] || new="$(find "$tmp/x" -type f -name vaultfs | head -n 1)"
  if [ -z "$new" ] || [ -z "$(version_of "$new")" ]; then
    die "$file holds no vaultfs binary that runs here"
  fi
  mkdir -p "$install_dir"
  # Beside, then renamed over: a running daemon keeps its old inode.
  install -m 0755 "$new" "$install_dir/.vaultfs.new"
  mv -f "$install_dir/.vaultfs.new" "$install_dir/vaultfs"
  rm -rf "$tmp"
  trap - EXIT
  bin="$install_dir/vaultfs"
}

# Sets $bin: VAULTFS_BIN; else the vaultfs on PATH (the image's), else the
# one in $install_dir, when its version is the one asked for (any, for
# "latest"); else installs.
find_bin() {
  local c have
  bin=""
  if [ -n "${VAULTFS_BIN:-}" ]; then
    [ -x "$VAULTFS_BIN" ] || die "VAULTFS_BIN=$VAULTFS_BIN is not an executable file"
    bin="$VAULTFS_BIN"
    return
  fi
  for c in "$(command -v vaultfs 2>/dev/null || true)" "$install_dir/vaultfs"; do
    if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
    have="$(version_of "$c")"
    if [ -n "$have" ] && { [ "$version" = latest ] || [ "$have" = "$version" ]; }; then
      bin="$c"
      return
    fi
    [ -z "$have" ] || say "$c is vaultfs $have, not $version"
  done
  [ "${1:-}" = no-install ] || install_bin
}

# Put the binary in use on the workspace's PATH.
link_bin() {
  local d="${CODER_SCRIPT_BIN_DIR:-}"
  [ -n "$d" ] || return 0
  mkdir -p "$d"
  [ "$d/vaultfs" -ef "$bin" ] || ln -sfn "$bin" "$d/vaultfs"
}

token_id() { # changes whenever the token vaultfs would use changes
  if [ -n "${VAULT_TOKEN:-}${BAO_TOKEN:-}" ]; then
    printf 'env:%s' "${VAULT_TOKEN:-}${BAO_TOKEN:-}" | sha256sum | cut -c1-16
  elif [ -s "$HOME/.vault-token" ]; then
    sha256sum <"$HOME/.vault-token" | cut -c1-16
  fi
}

wait_live() { # SECONDS
  local deadline=$((SECONDS + $1))
  until is_live; do
    [ "$SECONDS" -lt "$deadline" ] || die "$mount_path is not mounted after $1s (see the vaultfs start script's log)"
    sleep 0.5
  done
}

case "$action" in
  stop)
    # Nothing mounted is fine when stopping.
    is_mounted || exit 0
    version=latest # any vaultfs can unmount
    find_bin no-install
    [ -n "$bin" ] || die "cannot unmount $mount_path: no vaultfs binary (set VAULTFS_BIN)"
    # Files still open there: detach now, the daemon exits once they close.
    if ! "$bin" unmount "$mount_path" 2>/dev/null; then
      cause="$("$bin" unmount --lazy "$mount_path" 2>&1 >/dev/null)" || die "${cause#vaultfs: }"
    fi
    exit 0
    ;;
  wait)
    wait_live "${2:-120}"
    exit 0
    ;;
  start) ;;
  *) die "usage: run.sh start|stop|wait [SECONDS]" ;;
esac

[ -e /dev/fuse ] || die "/dev/fuse is missing: the workspace container needs --device /dev/fuse"
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || [ "$(id -u)" = 0 ] \
  || die "neither fusermount3 nor fusermount is installed: add the fuse3 (or fuse) package to the workspace image"
[ -n "${VAULT_ADDR:-${BAO_ADDR:-}}" ] || die "VAULT_ADDR is not set (add a Vault module, or set it on the agent)"

find_bin
link_bin

args=(mount "$mount_path" --ttl "${VAULTFS_TTL:-60s}")
IFS=',' read -r -a kvs <<<"${VAULTFS_KV_MOUNTS:-}"
for kv in "${kvs[@]}"; do
  kv="${kv//[[:space:]]/}"
  [ -z "$kv" ] || args+=(--kv "$kv")
done
# As a flag, so that it counts in the settings fingerprint below.
[ -z "${VAULTFS_AUDIT_LOG:-}" ] || args+=(--audit-log "$VAULTFS_AUDIT_LOG")

# What this start would mount; a live mount made with the same is kept
# (agent restarts, a second start). A token from the environment counts (as
# a hash): the daemon cannot see a new one. ~/.vault-token does not: the
# daemon re-reads it when it changes.
env_token=""
if [ -n "${VAULT_TOKEN:-}${BAO_TOKEN:-}" ]; then env_token="$(token_id)"; fi
fingerprint="$(printf '%s\n' "$bin" "$(version_of "$bin")" "${args[@]}" "${VAULT_ADDR:-${BAO_ADDR:-}}" \
  "${VAULT_NAMESPACE:-${BAO_NAMESPACE:-}}" "$env_token" | sha256sum | cut -c1-32)"
fp_file="$state_dir/coder-$(printf '%s' "$mount_path" | sha256sum | cut -c1-16).settings"
if is_live; then
  if [ "$(cat "$fp_file" 2>/dev/null)" = "$fingerprint" ]; then
    say "Vault secrets already mounted at $mount_path"
    exit 0
  fi
  say "remounting $mount_path with new settings"
  "$bin" unmount "$mount_path" >/dev/null 2>&1 || "$bin" unmount --lazy "$mount_path" >/dev/null 2>&1 || true
fi

# Other modules (vault-github, vault-jwt, ...) log in from their own start
# scripts, which run in parallel with this one, and a persistent home may
# still hold the token of an earlier login: wait, bounded, for a token that
# Vault accepts, retrying at once when the token changes.
wait_s="${VAULTFS_TOKEN_WAIT:-120}"
case "$wait_s" in '' | *[!0-9]*) die "VAULTFS_TOKEN_WAIT=$wait_s is not a number of seconds" ;; esac
deadline=$((SECONDS + wait_s))
err="$(mktemp)"
trap 'rm -f "$err"' EXIT
tried="" next=0 backoff=1 cause="" waiting=""
while :; do
  id="$(token_id)"
  if [ -n "$id" ] && { [ "$id" != "$tried" ] || [ "$SECONDS" -ge "$next" ]; }; then
    if "$bin" "${args[@]}" 2>"$err"; then
      break
    fi
    cause="$(tail -n 1 "$err")"
    cause="${cause#vaultfs: }"
    case "$cause" in
      *"was rejected by Vault"* | *"cannot reach Vault"* | *"token file"* | *"no Vault token"*) ;;
      *) die "$cause" ;;
    esac
    [ "$id" = "$tried" ] || backoff=1
    tried="$id" next=$((SECONDS + backoff)) backoff=$((backoff < 8 ? backoff * 2 : 10))
    [ -n "$waiting" ] || say "waiting up to ${wait_s}s for a token Vault accepts ($cause)"
    waiting=1
  elif [ -z "$id" ] && [ -z "$waiting" ]; then
    say "waiting up to ${wait_s}s for VAULT_TOKEN or ~/.vault-token"
    waiting=1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    [ -n "$cause" ] || die "no Vault token after ${wait_s}s: set VAULT_TOKEN or log in with \`vault login\`"
    case "$cause" in *"cannot reach Vault"*) die "still failing after ${wait_s}s: $cause" ;; esac
    die "no token Vault accepts after ${wait_s}s: $cause"
  fi
  sleep 0.5
done
mkdir -p "$state_dir"
printf '%s\n' "$fingerprint" >"$fp_file"
say "Vault secrets mounted at $mount_path"
