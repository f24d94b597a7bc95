use std::process::ExitCode;

fn main() -> ExitCode {
    vaultfs::main()
}
