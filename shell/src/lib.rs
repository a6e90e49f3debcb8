//! The `kfs` shell (binary `kfs`): interactive and one-shot commands against a KFS cluster.
//!
//! Not built yet: the binary and its commands arrive with the shell issue.
