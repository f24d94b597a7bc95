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
}

variable "vaultfs_version" {
  type        = string
  description = "The vaultfs release to install when the binary is not already in the image (e.g. \"0.1.0\" or \"latest\")."
  default     = "latest"
}

variable "ttl" {
  type        = string
  description = "How long listings and secret values are cached (e.g. \"60s\", \"5m\")."
  default     = "60s"
}

variable "kv_mounts" {
  type        = list(string)
  description = "KV mounts to show (e.g. [\"secret\", \"team/kv\"]). Empty: every KV mount the token can see."
  default     = []
}

variable "token_wait" {
  type        = number
  description = "Seconds to wait for VAULT_TOKEN or ~/.vault-token to appear (other modules log in in parallel)."
  default     = 120
}

locals {
  # Each value single-quoted for the shell, whatever characters it holds.
  settings = {
    VAULTFS_MOUNT_PATH = var.mount_path
    VAULTFS_VERSION    = var.vaultfs_version
    VAULTFS_TTL        = var.ttl
    VAULTFS_KV_MOUNTS  = join(",", var.kv_mounts)
    VAULTFS_TOKEN_WAIT = tostring(var.token_wait)
  }
  exports = join("\n", [for k, v in local.settings : "export ${k}='${replace(v, "'", "'\\''")}'"])
  run_sh  = file("${path.module}/run.sh")
}

resource "coder_script" "vaultfs" {
  agent_id           = var.agent_id
  display_name       = "vaultfs"
  icon               = "/icon/vault.svg"
  run_on_start       = true
  start_blocks_login = false
  script             = "#!/usr/bin/env bash\n${local.exports}\nset -- start\n${local.run_sh}"
}

resource "coder_script" "vaultfs_stop" {
  agent_id     = var.agent_id
  display_name = "vaultfs (unmount)"
  icon         = "/icon/vault.svg"
  run_on_stop  = true
  script       = "#!/usr/bin/env bash\n${local.exports}\nset -- stop\n${local.run_sh}"
}
