//! Test harness: real OpenBao dev servers, real FUSE mounts of the vaultfs
//! binary, and the mount table and state paths as the crate reads them.
//! Nothing here is a mock. Each part is compiled with the tests that use it.

#[cfg(feature = "fuse_tests")]
pub mod cluster;
#[cfg(feature = "fuse_tests")]
pub mod hostile;
pub mod mount;
#[cfg(feature = "tool_tests")]
pub mod package;
pub mod processes;
#[cfg(feature = "tool_tests")]
pub mod readers;
#[cfg(feature = "fuse_tests")]
pub mod rotation;
#[cfg(feature = "bao_tests")]
pub mod server;

pub use mount::*;
pub use processes::*;
#[cfg(feature = "bao_tests")]
pub use server::*;
