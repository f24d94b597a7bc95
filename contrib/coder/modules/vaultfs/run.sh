#!/usr/bin/env bash
# vaultfs for Coder workspaces.
#   run.sh start          install the requested vaultfs if needed, wait (bounded)
#                         for a token Vault accepts, mount; succeeds at once when
#                         the same settings are already mounted and live
#   run.sh stop           unmount (nothing mounted is fine)
#   run.sh wait [SECS]    wait until the mount is live (default: VAULTFS_WAIT)
#
# Settings come from the environment (main.tf exports them; set them by hand
# to run this script anywhere):
#   VAULTFS_MOUNT_PATH       where to mount (default ~/secrets)
#   VAULTFS_VERSION          release to use, e.g. 0.1.0 (default latest: whatever
#                            is installed, else the newest release)
#   VAULTFS_BASE_URL         where releases are (default https://github.com/vaultfs/vaultfs/releases);
#                            files are at <base>/download/v<version>/ and <base>/latest/download/
#   VAULTFS_SHA256           the archive's SHA-256, pinned (required over http://)
#   VAULTFS_TTL              cache TTL (default 60s)
#   VAULTFS_KV_MOUNTS        comma-separated KV mounts to show (default: all the token sees)
#   VAULTFS_TOKEN_WAIT       seconds to wait for a token Vault accepts (default 120)
#   VAULTFS_ALLOW_NON_EMPTY  "true": mount over a directory that holds files
#   VAULTFS_AUDIT_LOG        record every read of a secret in this file (vaultfs audit)
#   VAULTFS_WAIT             seconds `wait` waits (default: token wait + 180)
#   VAULTFS_SYNC_NAME        the `coder exp sync` name of the start script
#   VAULTFS_DATA_DIR         default ~/.coder-modules/vaultfs/vaultfs
#   VAULTFS_BIN              use this binary; never download
#   VAULTFS_INSTALL_DIR      where to install (default <data dir>/bin)
#   VAULTFS_DOWNLOAD_URL     one archive's URL (its SHA256SUMS beside it, or VAULTFS_SHA256)
# VAULT_ADDR (and VAULT_NAMESPACE, VAULT_CACERT, ...) are read by vaultfs itself.
# CODER_SCRIPT_BIN_DIR (set by the Coder agent, on the workspace's PATH) gets a
# `vaultfs` link to the binary in use.
set -euo pipefail
umask 077

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
version="${VAULTFS_VERSION:-latest}"
version="${version#v}"
base_url="${VAULTFS_BASE_URL:-https://github.com/vaultfs/vaultfs/releases}"
base_url="${base_url%/}"
pinned_sha256="$(printf '%s' "${VAULTFS_SHA256:-}" | tr '[:upper:]' '[:lower:]')"
wait_s="${VAULTFS_TOKEN_WAIT:-120}"
case "$wait_s" in '' | *[!0-9]*) die "VAULTFS_TOKEN_WAIT=$wait_s is not a number of seconds" ;; esac
data_dir="${VAULTFS_DATA_DIR:-$HOME/.coder-modules/vaultfs/vaultfs}"
install_dir="${VAULTFS_INSTALL_DIR:-$data_dir/bin}"
# One settings file and one lock per mount path: two instances of the
# module (two mount paths) neither share nor block each other.
mount_id="$(printf '%s' "$mount_path" | sha256sum | cut -c1-16)"
fp_file="$data_dir/mounts/$mount_id.settings"
lock_file="$data_dir/mounts/$mount_id.lock"

# Removed on exit, whatever the exit.
cleanup_paths=()
sync_name=""
cleanup() {
  if [ "${#cleanup_paths[@]}" -gt 0 ]; then rm -rf "${cleanup_paths[@]}"; fi
  if [ -n "$sync_name" ]; then coder exp sync complete "$sync_name" > /dev/null 2>&1 || true; fi
}
trap cleanup EXIT

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

# 0 when a vaultfs mount at the mount path answers. statfs, not stat: the
# kernel answers stat from cached attributes even after the daemon died.
is_live() { is_mounted && timeout 10 stat -f -- "$mount_path" > /dev/null 2>&1; }

# fetch URL FILE; on failure $fetch_err says why (for one error line).
fetch() {
  local out
  if command -v curl > /dev/null 2>&1; then
    out="$(curl -fsSL --retry 3 -o "$2" "$1" 2>&1)" && return 0
  elif command -v wget > /dev/null 2>&1; then
    out="$(wget -q -O "$2" "$1" 2>&1)" && return 0
  else
    die "neither curl nor wget is installed; put vaultfs in the image or set VAULTFS_BIN"
  fi
  out="${out##*$'\n'}"
  fetch_err="${out:-download failed}"
  return 1
}

# "0.1.0" from `vaultfs 0.1.0`, or "" when BIN does not run.
version_of() { "$1" --version 2> /dev/null | awk '{ print $2; exit }' || true; }

# Downloads the release archive, verifies it (against the pinned SHA-256,
# else the release's SHA256SUMS) and installs the binary into
# $install_dir; sets $bin.
install_bin() {
  local arch target dir file url tmp want got resolved new have
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no vaultfs release for $(uname -m); put vaultfs in the image or set VAULTFS_BIN" ;;
  esac
  target="$arch-unknown-linux-musl"
  file=""
  if [ -n "${VAULTFS_DOWNLOAD_URL:-}" ]; then
    url="$VAULTFS_DOWNLOAD_URL"
    dir="${url%/*}"
    file="${url##*/}"
  elif [ "$version" = latest ]; then
    dir="$base_url/latest/download"
  else
    dir="$base_url/download/v$version"
  fi
  # A checksum from the same plain-http server as the archive proves
  # nothing: whoever can change one can change the other.
  case "$dir" in
    http://*)
      [ -n "$pinned_sha256" ] || die "refusing to download vaultfs over plain http:// ($dir) without a pinned SHA-256: set sha256 (VAULTFS_SHA256), or use https://"
      ;;
  esac
  tmp="$(mktemp -d)"
  cleanup_paths+=("$tmp")
  if [ -n "$pinned_sha256" ]; then
    if [ -z "$file" ]; then
      [ "$version" != latest ] || die "a pinned SHA-256 needs a pinned version (vaultfs_version), not latest"
      file="vaultfs-$version-$target.tar.gz"
    fi
    want="$pinned_sha256"
  else
    fetch "$dir/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $dir/SHA256SUMS ($fetch_err)"
    if [ -z "$file" ] && [ "$version" = latest ]; then
      file="$(awk -v t="-$target.tar.gz" 'substr($2, length($2) - length(t) + 1) == t && $2 ~ /^vaultfs-/ { print $2; exit }' "$tmp/SHA256SUMS")"
    elif [ -z "$file" ]; then
      file="vaultfs-$version-$target.tar.gz"
    fi
    want="$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")"
    [ -n "$want" ] || die "$dir/SHA256SUMS lists no ${file:-archive for $target}"
  fi
  url="$dir/$file"
  # The version this archive holds, by its name (vaultfs-<version>-<target>.tar.gz).
  resolved="${file#vaultfs-}"
  resolved="${resolved%-"$target".tar.gz}"
  [ "$resolved" != "$file" ] || resolved="$version"
  say "installing vaultfs $resolved ($url) into $install_dir"
  fetch "$url" "$tmp/archive.tar.gz" || die "cannot download $url ($fetch_err)"
  got="$(sha256sum "$tmp/archive.tar.gz" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    if [ -n "$pinned_sha256" ]; then
      die "checksum mismatch for $file (sha256 is pinned to $want, the download is $got): refusing to install it"
    fi
    die "checksum mismatch for $file (SHA256SUMS says $want, the download is $got): refusing to install it"
  fi
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/archive.tar.gz" -C "$tmp/x" || die "cannot unpack $url"
  new="$tmp/x/${file%.tar.gz}/vaultfs"
  [ -f "$new" ] || new="$(find "$tmp/x" -type f -name vaultfs | head -n 1)"
  have=""
  [ -z "$new" ] || have="$(version_of "$new")"
  [ -n "$have" ] || die "$file holds no vaultfs binary that runs here"
  if [ "$version" != latest ] && [ "$have" != "$version" ]; then
    die "$file holds vaultfs $have, not $version: refusing to install it"
  fi
  mkdir -p "$install_dir"
  # Beside, then renamed over: a running daemon keeps its old inode.
  install -m 0755 "$new" "$install_dir/.vaultfs.new"
  mv -f "$install_dir/.vaultfs.new" "$install_dir/vaultfs"
  bin="$install_dir/vaultfs"
}

# Sets $bin (resolved through links): VAULTFS_BIN; else the vaultfs on PATH
# (the image's, or the link this script left in CODER_SCRIPT_BIN_DIR), else
# the one in $install_dir, when its version is the one asked for (any, for
# "latest"); else installs.
find_bin() {
  local c have
  bin=""
  if [ -n "${VAULTFS_BIN:-}" ]; then
    [ -x "$VAULTFS_BIN" ] || die "VAULTFS_BIN=$VAULTFS_BIN is not an executable file"
    bin="$VAULTFS_BIN"
  else
    for c in "$(command -v vaultfs 2> /dev/null || true)" "$install_dir/vaultfs"; do
      if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
      have="$(version_of "$c")"
      if [ -n "$have" ] && { [ "$version" = latest ] || [ "$have" = "$version" ]; }; then
        bin="$c"
        break
      fi
      [ -z "$have" ] || say "$c is vaultfs $have, not $version"
    done
    if [ -z "$bin" ] && [ "${1:-}" != no-install ]; then install_bin; fi
  fi
  if [ -n "$bin" ]; then bin="$(readlink -f -- "$bin")"; fi
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
    sha256sum < "$HOME/.vault-token" | cut -c1-16
  fi
}

wait_live() { # SECONDS
  local deadline=$((SECONDS + $1))
  until is_live; do
    [ "$SECONDS" -lt "$deadline" ] || die "$mount_path is not mounted after $1s (see the vaultfs start script's log)"
    sleep 0.5
  done
}

# One start (or stop) per mount path at a time: a second start waits, then
# finds the first one's mount. Every vaultfs run below closes fd 9, or the
# daemon would hold the lock for its whole life.
take_lock() { # SECONDS
  command -v flock > /dev/null 2>&1 || die "flock is not installed: add util-linux (or busybox) to the workspace image"
  mkdir -p "$data_dir/mounts"
  exec 9>> "$lock_file"
  flock -w "$1" 9
}

case "$action" in
  stop)
    take_lock 30 || say "another start or stop of $mount_path is still running; stopping anyway"
    rm -f "$fp_file"
    # Nothing mounted is fine when stopping.
    is_mounted || exit 0
    version=latest # any vaultfs can unmount
    find_bin no-install
    [ -n "$bin" ] || die "cannot unmount $mount_path: no vaultfs binary (set VAULTFS_BIN)"
    # Files still open there: detach now, the daemon exits once they close.
    if ! "$bin" unmount "$mount_path" 2> /dev/null 9>&-; then
      cause="$("$bin" unmount --lazy "$mount_path" 2>&1 > /dev/null 9>&-)" || die "${cause#vaultfs: }"
    fi
    exit 0
    ;;
  wait)
    wait_live "${2:-${VAULTFS_WAIT:-$((wait_s + 180))}}"
    exit 0
    ;;
  start) ;;
  *) die "usage: run.sh start|stop|wait [SECONDS]" ;;
esac

# Scripts that `coder exp sync want` this one start once it has finished
# (mounted or failed). Agents without startup coordination skip this.
if [ -n "${VAULTFS_SYNC_NAME:-}" ] && command -v coder > /dev/null 2>&1; then
  if coder exp sync start "$VAULTFS_SYNC_NAME" > /dev/null 2>&1; then sync_name="$VAULTFS_SYNC_NAME"; fi
fi

take_lock $((wait_s + 600)) || die "another start of $mount_path is still running after $((wait_s + 600))s"

[ -e /dev/fuse ] || die "/dev/fuse is missing: the workspace container needs --device /dev/fuse"
command -v fusermount3 > /dev/null 2>&1 || command -v fusermount > /dev/null 2>&1 || [ "$(id -u)" = 0 ] \
  || die "neither fusermount3 nor fusermount is installed: add the fuse3 (or fuse) package to the workspace image"
[ -n "${VAULT_ADDR:-${BAO_ADDR:-}}" ] || die "VAULT_ADDR is not set (add a Vault module, or set it on the agent)"

find_bin
link_bin

args=(mount "$mount_path" --ttl "${VAULTFS_TTL:-60s}" --log-file "$data_dir/vaultfs.log")
IFS=',' read -r -a kvs <<< "${VAULTFS_KV_MOUNTS:-}"
for kv in "${kvs[@]}"; do
  kv="${kv//[[:space:]]/}"
  [ -z "$kv" ] || args+=(--kv "$kv")
done
allow_non_empty="${VAULTFS_ALLOW_NON_EMPTY:-false}"
if [ "$allow_non_empty" = true ]; then args+=(--allow-non-empty); fi
# As a flag, so that it counts in the settings fingerprint below.
[ -z "${VAULTFS_AUDIT_LOG:-}" ] || args+=(--audit-log "$VAULTFS_AUDIT_LOG")

# What this start would mount; a live mount made with the same is kept
# (agent restarts, a second start). The binary counts by its version, never
# its path: the first start finds the installed file, later ones the link in
# CODER_SCRIPT_BIN_DIR. A token from the environment counts (as a hash): the
# daemon cannot see a new one. ~/.vault-token does not: the daemon re-reads
# it when it changes.
env_token=""
if [ -n "${VAULT_TOKEN:-}${BAO_TOKEN:-}" ]; then env_token="$(token_id)"; fi
fingerprint="$(printf '%s\n' "$(version_of "$bin")" "${args[@]}" "${VAULT_ADDR:-${BAO_ADDR:-}}" \
  "${VAULT_NAMESPACE:-${BAO_NAMESPACE:-}}" "$env_token" | sha256sum | cut -c1-32)"
if is_live; then
  if [ "$(cat "$fp_file" 2> /dev/null)" = "$fingerprint" ]; then
    say "Vault secrets already mounted at $mount_path"
    exit 0
  fi
  say "remounting $mount_path with new settings"
  rm -f "$fp_file"
  "$bin" unmount "$mount_path" > /dev/null 2>&1 9>&- || "$bin" unmount --lazy "$mount_path" > /dev/null 2>&1 9>&- || true
fi

# A directory that holds files would be hidden by the mount. Checked here,
# before the token wait, so the start fails at once; a dead vaultfs mount
# is left to vaultfs, which removes it and then checks what is underneath.
if [ "$allow_non_empty" != true ] && ! is_mounted && [ -d "$mount_path" ] \
  && [ -n "$(ls -A -- "$mount_path" 2> /dev/null)" ]; then
  die "$mount_path is not empty: mounting would hide its files; empty it, choose another mount_path, or set allow_non_empty = true"
fi

# Other modules (vault-github, vault-jwt, ...) log in from their own start
# scripts, which run in parallel with this one, and a persistent home may
# still hold the token of an earlier login: wait, bounded, for a token that
# Vault accepts, retrying at once when the token changes.
deadline=$((SECONDS + wait_s))
err="$(mktemp)"
cleanup_paths+=("$err")
tried="" next=0 backoff=1 cause="" waiting=""
while :; do
  id="$(token_id)"
  if [ -n "$id" ] && { [ "$id" != "$tried" ] || [ "$SECONDS" -ge "$next" ]; }; then
    if "$bin" "${args[@]}" 2> "$err" 9>&-; then
      break
    fi
    cause="$(tail -n 1 "$err")"
    cause="${cause#vaultfs: }"
    case "$cause" in
      *"was rejected by Vault"* | *"cannot reach Vault"* | *"token file"* | *"no Vault token"*) ;;
      *"not empty"*) die "$mount_path is not empty: mounting would hide its files; empty it, choose another mount_path, or set allow_non_empty = true" ;;
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
printf '%s\n' "$fingerprint" > "$fp_file"
say "Vault secrets mounted at $mount_path"
