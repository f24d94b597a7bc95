terraform {
  required_version = ">= 1.2"

  required_providers {
    coder = {
      source  = "coder/coder"
      version = ">= 0.17"
    }
  }
}

variable "agent_id" {
  type        = string
  description = "The ID of a Coder agent."
}

variable "mount_path" {
  type        = string
  description = "Where to mount the secrets. A leading ~/ is the workspace user's home."
  default     = "~/secrets"
  validation {
    condition     = can(regex("^(~|~/.+|/.+)$", var.mount_path))
    error_message = "mount_path must be absolute or start with ~/."
  }
}

variable "vaultfs_version" {
  type        = string
  description = "The vaultfs release to use, e.g. \"0.1.0\". A vaultfs already installed (image or home) of another version is replaced. \"latest\": use whatever is installed, else download the newest release."
  default     = "latest"
  validation {
    condition     = var.vaultfs_version == "latest" || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.]+)?$", var.vaultfs_version))
    error_message = "vaultfs_version must be \"latest\" or a release version without a leading v, such as \"0.1.0\"."
  }
}

variable "base_url" {
  type        = string
  description = "Where vaultfs releases are downloaded from, laid out like GitHub releases: <base_url>/download/v<version>/ and <base_url>/latest/download/, each with the archives and SHA256SUMS. Point it at a mirror or an internal artifact store. Plain http:// needs sha256."
  default     = "https://github.com/vaultfs/vaultfs/releases"
  validation {
    condition     = can(regex("^(https?|file)://", var.base_url))
    error_message = "base_url must be an http(s):// or file:// URL."
  }
}

variable "sha256" {
  type        = string
  description = "The SHA-256 of the release archive for the workspaces' architecture, pinned: checked instead of the release's SHA256SUMS. Required when base_url is plain http://, where a checksum file from the same server proves nothing. Needs a pinned vaultfs_version."
  default     = ""
  validation {
    condition     = can(regex("^([0-9A-Fa-f]{64})?$", var.sha256))
    error_message = "sha256 must be 64 hexadecimal digits (or empty)."
  }
}

variable "allow_non_empty" {
  type        = bool
  description = "Whether to mount over a mount_path that holds files, hiding them until unmounted. Off: such a start fails with a message."
  default     = false
}

variable "ttl" {
  type        = string
  description = "How long listings and secret values are cached, as vaultfs --ttl reads it (e.g. \"60s\", \"5m\", \"1m30s\", \"1h 30m\")."
  default     = "60s"
  validation {
    # vaultfs reads durations with humantime: numbers (a fraction allowed)
    # with units, one after the other. Its bound (365 days) is checked at start.
    condition     = can(regex("^ *([0-9]+(\\.[0-9]+)? *(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y) *)+$", var.ttl))
    error_message = "ttl must be a duration such as \"60s\", \"5m\" or \"1m30s\" (numbers with units: ms, s, m, h, d)."
  }
}

variable "kv_mounts" {
  type        = list(string)
  description = "KV mounts to show (e.g. [\"secret\", \"team/kv\"]). Empty: every KV mount the token can see."
  default     = []
  validation {
    condition     = alltrue([for m in var.kv_mounts : length(trimspace(m)) > 0 && !can(regex(",", m))])
    error_message = "kv_mounts entries must be non-empty and hold no comma."
  }
}

variable "token_wait" {
  type        = number
  description = "Seconds to wait for a token that Vault accepts: other modules log in in parallel, and a persistent home may hold an expired token until then."
  default     = 120
  validation {
    condition     = var.token_wait >= 0 && var.token_wait <= 3600 && floor(var.token_wait) == var.token_wait
    error_message = "token_wait must be a whole number of seconds from 0 to 3600."
  }
}

variable "audit_log" {
  type        = string
  description = "File to record every read of a secret in (which program, pid, user, path, version; never a value), for `vaultfs audit`. Empty: no read audit."
  default     = ""
}

variable "start_blocks_login" {
  type        = bool
  description = "Whether logins wait until the secrets are mounted (or the start script failed)."
  default     = false
}

locals {
  # The `coder exp sync` name of the start script: one per mount path, so
  # that two instances of the module do not share one.
  sync_name = "vaultfs-vaultfs-mount-${substr(sha256(var.mount_path), 0, 8)}"
  # Each value single-quoted for the shell, whatever characters it holds.
  settings = {
    VAULTFS_MOUNT_PATH      = var.mount_path
    VAULTFS_VERSION         = var.vaultfs_version
    VAULTFS_BASE_URL        = var.base_url
    VAULTFS_SHA256          = var.sha256
    VAULTFS_TTL             = var.ttl
    VAULTFS_KV_MOUNTS       = join(",", var.kv_mounts)
    VAULTFS_TOKEN_WAIT      = tostring(var.token_wait)
    VAULTFS_ALLOW_NON_EMPTY = tostring(var.allow_non_empty)
    VAULTFS_AUDIT_LOG       = var.audit_log
    VAULTFS_SYNC_NAME       = local.sync_name
  }
  exports = join("\n", [for k, v in local.settings : "export ${k}='${replace(v, "'", "'\\''")}'"])
  run_sh  = file("${path.module}/run.sh")
  # run.sh's `wait`, whole, as one command line another script can hold:
  # it needs nothing this module installs (no vaultfs on PATH yet).
  wait_command = "bash -c \"$(printf %s '${base64encode("${local.exports}\n${local.run_sh}")}' | base64 -d)\" vaultfs-wait wait"
}

resource "coder_script" "vaultfs" {
  agent_id           = var.agent_id
  display_name       = "vaultfs"
  icon               = "/icon/vault.svg"
  run_on_start       = true
  start_blocks_login = var.start_blocks_login
  script             = "#!/usr/bin/env bash\n${local.exports}\nset -- start\n${local.run_sh}"

  lifecycle {
    precondition {
      condition     = !can(regex("^http://", var.base_url)) || var.sha256 != ""
      error_message = "base_url is plain http://: set sha256 to the archive's SHA-256 (a checksum file from the same server proves nothing), or use https://."
    }
    precondition {
      condition     = var.sha256 == "" || var.vaultfs_version != "latest"
      error_message = "sha256 pins one archive: set vaultfs_version to its version, not \"latest\"."
    }
  }
}

resource "coder_script" "vaultfs_stop" {
  agent_id     = var.agent_id
  display_name = "vaultfs (unmount)"
  icon         = "/icon/vault.svg"
  run_on_stop  = true
  script       = "#!/usr/bin/env bash\n${local.exports}\nset -- stop\n${local.run_sh}"
}

output "scripts" {
  description = "The `coder exp sync` names of this module's start scripts, for `coder exp sync want <self> <each of these>`: such a script starts once the mount is up (or the start failed)."
  value       = [local.sync_name]
}

output "wait_command" {
  description = "A shell command that waits, bounded (token_wait + 180 seconds), until the secrets are mounted and live, and fails with one line if they are not. It needs nothing this module installs: put it in any start script that reads secrets."
  value       = local.wait_command
}

output "mount_path" {
  description = "Where the secrets are mounted, as given."
  value       = var.mount_path
}
