terraform {
  required_version = ">= 1.0"

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
    condition     = can(regex("^(latest|v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.]+)?)$", var.vaultfs_version))
    error_message = "vaultfs_version must be \"latest\" or a release version such as \"0.1.0\"."
  }
}

variable "base_url" {
  type        = string
  description = "Where vaultfs releases are downloaded from, laid out like GitHub releases: <base_url>/download/v<version>/ and <base_url>/latest/download/, each with the archives and SHA256SUMS. Point it at a mirror or an internal artifact store."
  default     = "https://github.com/vaultfs/vaultfs/releases"
  validation {
    condition     = can(regex("^(https?|file)://", var.base_url))
    error_message = "base_url must be an http(s):// or file:// URL."
  }
}

variable "ttl" {
  type        = string
  description = "How long listings and secret values are cached (e.g. \"60s\", \"5m\")."
  default     = "60s"
  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h)$", var.ttl))
    error_message = "ttl must be a number with a unit: ms, s, m or h (e.g. \"60s\")."
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
  # Each value single-quoted for the shell, whatever characters it holds.
  settings = {
    VAULTFS_MOUNT_PATH = var.mount_path
    VAULTFS_VERSION    = var.vaultfs_version
    VAULTFS_BASE_URL   = var.base_url
    VAULTFS_TTL        = var.ttl
    VAULTFS_KV_MOUNTS  = join(",", var.kv_mounts)
    VAULTFS_TOKEN_WAIT = tostring(var.token_wait)
    VAULTFS_AUDIT_LOG  = var.audit_log
  }
  exports = join("\n", [for k, v in local.settings : "export ${k}='${replace(v, "'", "'\\''")}'"])
  run_sh  = file("${path.module}/run.sh")
}

resource "coder_script" "vaultfs" {
  agent_id           = var.agent_id
  display_name       = "vaultfs"
  icon               = "/icon/vault.svg"
  run_on_start       = true
  start_blocks_login = var.start_blocks_login
  script             = "#!/usr/bin/env bash\n${local.exports}\nset -- start\n${local.run_sh}"
}

resource "coder_script" "vaultfs_stop" {
  agent_id     = var.agent_id
  display_name = "vaultfs (unmount)"
  icon         = "/icon/vault.svg"
  run_on_stop  = true
  script       = "#!/usr/bin/env bash\n${local.exports}\nset -- stop\n${local.run_sh}"
}
