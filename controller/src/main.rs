//! `ward-controller`: see [`ward_controller::cli`].
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    ward_controller::cli::main()
}
