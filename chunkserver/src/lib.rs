//! KFS chunkserver: holds file data as replicated chunks, each 64 KiB block checked by crc32c,
//! and reports the chunks it holds to the master at start-up and in heartbeats.
pub mod store;
