mock_provider "coder" {}

variables {
  agent_id = "test-agent-id"
}

run "defaults" {
  command = plan

  assert {
    condition     = resource.coder_script.vaultfs.run_on_start == true
    error_message = "The start script must run on start"
  }

  assert {
    condition     = resource.coder_script.vaultfs_stop.run_on_stop == true
    error_message = "The stop script must run on stop"
  }

  assert {
    condition     = resource.coder_script.vaultfs.start_blocks_login == false
    error_message = "Logins must not wait for the mount by default"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_MOUNT_PATH='~/secrets'")
    error_message = "The start script must export the default mount path"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_ALLOW_NON_EMPTY='false'")
    error_message = "A non-empty mount path must be refused by default"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "\nset -- start\n")
    error_message = "The start script must run run.sh start"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs_stop.script, "\nset -- stop\n")
    error_message = "The stop script must run run.sh stop"
  }

  assert {
    condition     = length(output.scripts) == 1 && startswith(output.scripts[0], "vaultfs-vaultfs-mount-")
    error_message = "The scripts output must name the start script's coder exp sync name"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_SYNC_NAME='${output.scripts[0]}'")
    error_message = "The start script must use the sync name the scripts output gives"
  }

  assert {
    condition     = startswith(output.wait_command, "bash -c ") && endswith(output.wait_command, " vaultfs-wait wait")
    error_message = "wait_command must run run.sh wait"
  }
}

run "settings_are_single_quoted" {
  command = plan

  variables {
    mount_path = "~/it's $HOME"
    kv_mounts  = ["coder", "team/kv"]
    ttl        = "1m30s"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_MOUNT_PATH='~/it'\\''s $HOME'")
    error_message = "The mount path must be single-quoted, its quote escaped"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_KV_MOUNTS='coder,team/kv'")
    error_message = "kv_mounts must be joined with commas"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_TTL='1m30s'")
    error_message = "ttl must be passed as given"
  }
}

run "two_mount_paths_get_two_sync_names" {
  command = plan

  variables {
    mount_path = "~/other"
  }

  assert {
    condition     = output.scripts[0] != "vaultfs-vaultfs-mount-${substr(sha256("~/secrets"), 0, 8)}"
    error_message = "Another mount path must get another sync name"
  }
}

run "allow_non_empty" {
  command = plan

  variables {
    allow_non_empty = true
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_ALLOW_NON_EMPTY='true'")
    error_message = "allow_non_empty must reach run.sh"
  }
}

run "pinned_version_and_sha256_over_http" {
  command = plan

  variables {
    vaultfs_version = "0.1.0"
    base_url        = "http://mirror.internal/vaultfs"
    sha256          = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }

  assert {
    condition     = strcontains(resource.coder_script.vaultfs.script, "export VAULTFS_SHA256='0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'")
    error_message = "sha256 must reach run.sh"
  }
}

run "plain_http_without_sha256_is_refused" {
  command = plan

  variables {
    vaultfs_version = "0.1.0"
    base_url        = "http://mirror.internal/vaultfs"
  }

  expect_failures = [resource.coder_script.vaultfs]
}

run "sha256_with_latest_is_refused" {
  command = plan

  variables {
    sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }

  expect_failures = [resource.coder_script.vaultfs]
}

run "version_with_leading_v_is_refused" {
  command = plan

  variables {
    vaultfs_version = "v0.1.0"
  }

  expect_failures = [var.vaultfs_version]
}

run "ttl_without_unit_is_refused" {
  command = plan

  variables {
    ttl = "60"
  }

  expect_failures = [var.ttl]
}

run "bad_sha256_is_refused" {
  command = plan

  variables {
    sha256 = "not-a-digest"
  }

  expect_failures = [var.sha256]
}

run "relative_mount_path_is_refused" {
  command = plan

  variables {
    mount_path = "secrets"
  }

  expect_failures = [var.mount_path]
}

run "fractional_token_wait_is_refused" {
  command = plan

  variables {
    token_wait = 1.5
  }

  expect_failures = [var.token_wait]
}
