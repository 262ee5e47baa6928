//! `ward-agent`, built into the end-to-end package.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ward_agent::cli::main()
}
