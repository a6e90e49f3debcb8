//! KFS chunkserver: holds file data as replicated chunks, each block checked by crc32c, and reports
//! the chunks it holds to the master at start-up and in heartbeats.
//!
//! Not built yet: the chunk store, hello and heartbeats arrive with the chunkserver issue.
