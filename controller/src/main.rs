//! `ward-controller`: see [`ward_controller::cli`].

fn main() -> anyhow::Result<()> {
    ward_controller::cli::main()
}
