//! `ward-controller`, built into the end-to-end package.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    ward_controller::cli::main()
}
