//! KFS master.
pub mod namespace;
pub mod tree;
