//! What the end-to-end tests (tests/e2e) and the fuzz targets (fuzz/) reach
//! inside the crate, and nothing else: the command line as clap defines it,
//! the exit statuses, the mount table and state paths as the daemon reads
//! them, the views' name rules, the client's parsers, and a client built
//! the way the daemon builds it. Compiled only with the `testing` feature.

pub mod auth {
    pub use crate::auth::{TokenOrigin, TokenSource};
}

pub mod cli {
    pub use crate::cli::{Cli, Command};
}

pub mod exit {
    pub use crate::exit::Exit;
}

pub mod mount_helper {
    pub use crate::mount_helper::{options, IGNORED};
}

pub mod mountpoint {
    pub use crate::mountpoint::{
        is_alive, parse_mountinfo_line, pid_file_name, run_dir, state_dir, table, MountEntry,
        PidFile, Shown,
    };
}

pub mod naming {
    pub use crate::naming::{decode, encode, own_name, NAME_MAX};
}

pub mod secret {
    pub use crate::secret::{Secret, SecretFile};
}

pub mod store {
    pub use crate::store::KvVersion;
}

pub mod tree {
    pub use crate::tree::listing_children;
}

pub mod vault {
    pub use crate::vault::{parse_list, parse_read, VaultClient};
}

pub mod views {
    pub use crate::views::{is_dangerous, is_variable_name};
}
