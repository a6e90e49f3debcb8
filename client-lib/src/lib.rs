//! KFS client library.
//!
//! Not built yet: `Client`, `File` and the data path arrive with the client-library issue. Until
//! then, programs talk to the master through `kfs_common::proto::master::MasterServiceClient`.
