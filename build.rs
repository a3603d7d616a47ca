//! Compiles `proto/` into gRPC code with `protox` (a protobuf compiler in Rust), so building
//! needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/replication.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
