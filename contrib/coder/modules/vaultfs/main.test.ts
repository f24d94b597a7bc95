import { describe, expect, it } from "bun:test";
import {
  execContainer,
  findResourceInstance,
  removeContainer,
  runContainer,
  runTerraformApply,
  runTerraformInit,
  testRequiredVariables,
} from "~test";

// A Debian image: bash, flock (util-linux) and sha256sum (coreutils), as
// the module needs, and no /dev/fuse (docker run gives none by default).
const image = "debian:bookworm-slim";

// Runs `cmd` in a fresh container of `image`; removes it.
const runInContainer = async (cmd: string[]) => {
  const id = await runContainer(image);
  try {
    return await execContainer(id, cmd);
  } finally {
    await removeContainer(id);
  }
};

describe("vaultfs", async () => {
  await runTerraformInit(import.meta.dir);

  testRequiredVariables(import.meta.dir, {
    agent_id: "foo",
  });

  it("refuses plain http:// without a pinned sha256", async () => {
    await expect(
      runTerraformApply(import.meta.dir, {
        agent_id: "foo",
        vaultfs_version: "0.1.0",
        base_url: "http://mirror.internal/vaultfs",
      }),
    ).rejects.toThrow("base_url is plain http://");
  });

  it("accepts plain http:// with a pinned sha256 and version", async () => {
    const state = await runTerraformApply(import.meta.dir, {
      agent_id: "foo",
      vaultfs_version: "0.1.0",
      base_url: "http://mirror.internal/vaultfs",
      sha256: "0".repeat(64),
    });
    const script = findResourceInstance(state, "coder_script", "vaultfs");
    expect(script.script).toContain(
      `export VAULTFS_SHA256='${"0".repeat(64)}'`,
    );
  });

  it("fails in one line where the container has no FUSE", async () => {
    const state = await runTerraformApply(import.meta.dir, {
      agent_id: "foo",
    });
    const script = findResourceInstance(state, "coder_script", "vaultfs");
    const resp = await runInContainer(["bash", "-c", script.script]);
    expect(resp.exitCode).toBe(1);
    expect(resp.stderr.trim()).toBe(
      "vaultfs: /dev/fuse is missing: the workspace container needs --device /dev/fuse",
    );
  });

  it("wait_command gives up in one line when nothing is mounted", async () => {
    const state = await runTerraformApply(import.meta.dir, {
      agent_id: "foo",
    });
    const waitCommand = state.outputs.wait_command.value as string;
    const resp = await runInContainer([
      "env",
      "VAULTFS_WAIT=1",
      "bash",
      "-c",
      waitCommand,
    ]);
    expect(resp.exitCode).toBe(1);
    expect(resp.stderr.trim()).toStartWith(
      "vaultfs: /root/secrets is not mounted after 1s",
    );
  });

  it("the stop script succeeds when nothing is mounted", async () => {
    const state = await runTerraformApply(import.meta.dir, {
      agent_id: "foo",
    });
    const script = findResourceInstance(state, "coder_script", "vaultfs_stop");
    const resp = await runInContainer(["bash", "-c", script.script]);
    expect(resp.exitCode).toBe(0);
  });
});
