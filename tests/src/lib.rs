//! Cross-crate tests of KFS: the in-process cluster harness, process-level fault tests and
//! whole-cluster model checks. Grows with the chunkserver and client issues; the master's own
//! model checks and crash tests live beside it in `master/tests/`.
