//! `ward-controller`, built into the end-to-end package.

fn main() -> anyhow::Result<()> {
    ward_controller::cli::main()
}
