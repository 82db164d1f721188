//! Generates server traits for the skeleton protos over fedimint-tonic-lnd's message types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".lnrpc", "::fedimint_tonic_lnd::lnrpc")
        .extern_path(".invoicesrpc", "::fedimint_tonic_lnd::invoicesrpc")
        .extern_path(".routerrpc", "::fedimint_tonic_lnd::routerrpc")
        .compile_protos(
            &[
                "proto/lightning.proto",
                "proto/invoices.proto",
                "proto/router.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
