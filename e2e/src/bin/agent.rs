//! `ward-agent`, built into the end-to-end package.

fn main() -> std::process::ExitCode {
    ward_agent::cli::main()
}
