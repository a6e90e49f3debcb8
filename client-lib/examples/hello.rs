//! Writes a file to a running KFS cluster and reads it back.
//!
//! `cargo run -p kfs-client --example hello -- 127.0.0.1:20000`

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let master = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:20000".into());
    let client = kfs_client::Client::connect(master.as_str()).await?;
    client.mkdir_all("/examples").await?;

    let mut file = client.create("/examples/hello.txt").await?;
    file.write_all(b"Hello from kfs-client!\n").await?;
    file.sync().await?; // every replica has it on disk
    file.close().await?;

    let mut text = String::new();
    client
        .open("/examples/hello.txt")
        .await?
        .read_to_string(&mut text)
        .await?;
    print!("{text}");
    for chunk in client.file_chunks("/examples/hello.txt").await? {
        println!(
            "{} {} on {} chunkservers",
            chunk.chunk,
            chunk.version,
            chunk.replicas.len()
        );
    }
    Ok(())
}
